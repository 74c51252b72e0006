"""ONNX export: the checker accepts every exported model, and ONNX Runtime computes what
GateScope computes (to 1e-4 relative) for every block type, the bundled examples included.

Weights are randomised with non-trivial values (biases, BatchNorm statistics, peepholes,
learned initial states all non-zero) so a layout bug cannot hide behind a zero.
"""
from __future__ import annotations

import glob
import json
import os
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from gatescope.compute.graph import Block, GraphSpec, Wire  # noqa: E402
from gatescope.studio import export_onnx  # noqa: E402
from gatescope.studio.export_onnx import ExportError, export_project  # noqa: E402
from gatescope.studio.project import Project, load_project  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "assets", "examples", "*.gscope")))


# ----------------------------------------------------------------------------- helpers
def randomised_project(spec: GraphSpec, seed: int = 1, name: str = "test") -> Project:
    """A project of ``spec`` whose every weight is random and non-trivial (biases included)."""
    project = Project(name=name, graph=spec)
    model = project.build_model()
    rng = np.random.default_rng(seed)
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("running_var"):
            state[key] = rng.uniform(0.5, 2.0, value.shape).astype(np.float32)
        else:
            state[key] = rng.normal(0.0, 0.6, value.shape).astype(np.float32)
    project.weights = state
    return project


def export_and_compare(project: Project, tmp_path, batch: int = 3, seed: int = 2, **options) -> dict:
    """Export ``project``, check the file, and compare ONNX Runtime with Model.predict."""
    path = tmp_path / f"{project.name}.onnx"
    summary = export_project(project, path, **options)
    onnx_model = onnx.load(str(path))
    onnx.checker.check_model(onnx_model, full_check=True)
    model = project.build_model()
    x = sample_input(model, batch, seed)
    expected = model.predict(x)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x})
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    return summary


def sample_input(model, batch: int, seed: int) -> np.ndarray:
    """Random samples for ``model``: token ids where the Input feeds an Embedding, else normal values."""
    rng = np.random.default_rng(seed)
    shape = (batch,) + tuple(model.input_shape)
    readers = [model.layers[bid] for bid, sources in model.sources.items() if model.input_id in sources]
    vocabularies = [layer.settings["vocabulary"] for layer in readers if layer.type_name == "Embedding"]
    if vocabularies:
        return rng.integers(0, min(vocabularies), shape).astype(np.float32)
    return rng.normal(0.0, 1.0, shape).astype(np.float32)


def chain(*blocks) -> GraphSpec:
    return GraphSpec.chain(*blocks)


# ----------------------------------------------------------------------------- feed-forward blocks
FEED_FORWARD = {
    "dense_relu_classify": chain(("Input", {"shape": (6,)}), ("Dense", {"units": 5}), ("ReLU", {}),
                                 ("Dense", {"units": 4}), ("Classify", {})),
    "dense_no_bias_regress": chain(("Input", {"shape": (6,)}), ("Dense", {"units": 3, "bias": False}),
                                   ("Regress", {})),
    "activations": chain(("Input", {"shape": (7,)}), ("Dense", {"units": 6}), ("LeakyReLU", {"slope": 0.2}),
                         ("Dense", {"units": 6}), ("Tanh", {}), ("Dense", {"units": 6}), ("Sigmoid", {}),
                         ("Dense", {"units": 4}), ("Softmax", {}), ("Dropout", {"rate": 0.3}), ("Regress", {})),
    "flatten_image": chain(("Input", {"shape": (2, 3, 4)}), ("Flatten", {}), ("Dense", {"units": 3}),
                           ("Classify", {})),
    "sequence_dense_per_step": chain(("Input", {"shape": (5, 4)}), ("Dense", {"units": 3}),
                                     ("Classify", {})),
    "flatten_clip_keeps_time": chain(("Input", {"shape": (3, 2, 4, 4)}), ("Flatten", {}),
                                     ("Dense", {"units": 2}), ("Regress", {})),
    "input_straight_to_head": chain(("Input", {"shape": (4,)}), ("Regress", {})),
    "reshape_vector_into_gru": chain(("Input", {"shape": (6,)}), ("Reshape", {"shape": (6, 1)}),
                                     ("GRU", {"hidden_size": 3}), ("Dense", {"units": 2}), ("Classify", {})),
}

CONV_AND_MERGE = {
    "conv2d_valid_stride": chain(("Input", {"shape": (3, 9, 8)}),
                                 ("Conv2D", {"filters": 4, "kernel_size": 3, "stride": 2}), ("ReLU", {}),
                                 ("Flatten", {}), ("Dense", {"units": 3}), ("Classify", {})),
    "conv2d_same_padding_pools": chain(("Input", {"shape": (2, 8, 7)}),
                                       ("Conv2D", {"filters": 3, "kernel_size": 4, "stride": 2,
                                                   "padding": "same"}),
                                       ("MaxPool2D", {"size": 2, "stride": 1}),
                                       ("Conv2D", {"filters": 3, "kernel_size": 2, "padding": 1, "bias": False}),
                                       ("AvgPool2D", {"size": 2}), ("GlobalAvgPool", {}), ("Regress", {})),
    "conv1d_pools": chain(("Input", {"shape": (12, 3)}),
                          ("Conv1D", {"filters": 4, "kernel_size": 3, "padding": "same"}),
                          ("MaxPool1D", {"size": 2}),
                          ("Conv1D", {"filters": 5, "kernel_size": 2, "stride": 2, "padding": 1}),
                          ("AvgPool1D", {"size": 2, "stride": 1}), ("GlobalAvgPool", {}), ("Regress", {})),
    "batchnorm_vector_sequence_image": chain(("Input", {"shape": (2, 5, 5)}), ("BatchNorm", {"epsilon": 0.01}),
                                             ("Conv2D", {"filters": 3, "kernel_size": 3}), ("Flatten", {}),
                                             ("BatchNorm", {}), ("Dense", {"units": 2}), ("Regress", {})),
    "batchnorm_sequence": chain(("Input", {"shape": (6, 4)}), ("BatchNorm", {}), ("Regress", {})),
    "time_distributed_conv_clip": chain(("Input", {"shape": (4, 2, 6, 6)}),
                                        ("Conv2D", {"filters": 3, "kernel_size": 3}), ("BatchNorm", {}),
                                        ("MaxPool2D", {"size": 2}), ("GlobalAvgPool", {}),
                                        ("Dense", {"units": 3}), ("Classify", {})),
    "embedding_max_over_time": chain(("Input", {"shape": (9,)}),
                                     ("Embedding", {"vocabulary": 11, "dimension": 4, "padding_id": 0}),
                                     ("Conv1D", {"filters": 3, "kernel_size": 2}), ("GlobalMaxPool1D", {}),
                                     ("Dense", {"units": 2}), ("Classify", {})),
    "time_slice_into_lstm": chain(("Input", {"shape": (7, 3)}), ("TimeSlice", {"start": 2, "length": 4}),
                                  ("LSTM", {"hidden_size": 3}), ("Regress", {})),
    "repeat_steps_into_gru": chain(("Input", {"shape": (5,)}), ("Dense", {"units": 3}), ("RepeatSteps", {"steps": 4}),
                                   ("GRU", {"hidden_size": 3, "return_sequences": True}), ("Regress", {})),
    "embedding_into_lstm": chain(("Input", {"shape": (6,)}), ("Embedding", {"vocabulary": 5, "dimension": 3}),
                                 ("LSTM", {"hidden_size": 4}), ("Regress", {})),
}


def residual_graph() -> GraphSpec:
    """Input -> Dense -> (ReLU, Dense) -> Add -> Concat with a third branch -> head."""
    blocks = [Block("in", "Input", {"shape": (5,)}), Block("d1", "Dense", {"units": 4}),
              Block("r", "ReLU", {}), Block("d2", "Dense", {"units": 4}), Block("add", "Add", {}),
              Block("d3", "Dense", {"units": 2}), Block("cat", "Concat", {}), Block("out", "Classify", {})]
    wires = [Wire("in", "d1"), Wire("d1", "r"), Wire("r", "d2"), Wire("d1", "add", 0), Wire("d2", "add", 1),
             Wire("in", "d3"), Wire("add", "cat", 0), Wire("d3", "cat", 1), Wire("cat", "out")]
    return GraphSpec(blocks, wires)


def image_concat_graph() -> GraphSpec:
    """Two Conv2D branches joined along channels, three inputs to Add on sequences."""
    blocks = [Block("in", "Input", {"shape": (2, 6, 6)}),
              Block("c1", "Conv2D", {"filters": 2, "kernel_size": 3, "padding": "same"}),
              Block("c2", "Conv2D", {"filters": 3, "kernel_size": 1}),
              Block("cat", "Concat", {}), Block("gap", "GlobalAvgPool", {}), Block("out", "Regress", {})]
    wires = [Wire("in", "c1"), Wire("in", "c2"), Wire("c1", "cat", 0), Wire("c2", "cat", 1),
             Wire("cat", "gap"), Wire("gap", "out")]
    return GraphSpec(blocks, wires)


def clip_concat_graph() -> GraphSpec:
    """Two time-distributed Conv2D branches over a clip, joined along channels (axis 2 batch-first)."""
    blocks = [Block("in", "Input", {"shape": (3, 2, 5, 5)}),
              Block("c1", "Conv2D", {"filters": 2, "kernel_size": 3, "padding": "same"}),
              Block("c2", "Conv2D", {"filters": 1, "kernel_size": 1}),
              Block("cat", "Concat", {}), Block("gap", "GlobalAvgPool", {}), Block("out", "Regress", {})]
    wires = [Wire("in", "c1"), Wire("in", "c2"), Wire("c1", "cat", 0), Wire("c2", "cat", 1),
             Wire("cat", "gap"), Wire("gap", "out")]
    return GraphSpec(blocks, wires)


def sequence_merge_graph() -> GraphSpec:
    blocks = [Block("in", "Input", {"shape": (4, 3)}), Block("a", "Dense", {"units": 3}),
              Block("b", "Dense", {"units": 3}), Block("add", "Add", {}), Block("cat", "Concat", {}),
              Block("out", "Regress", {})]
    wires = [Wire("in", "a"), Wire("in", "b"), Wire("in", "add", 0), Wire("a", "add", 1), Wire("b", "add", 2),
             Wire("add", "cat", 0), Wire("a", "cat", 1), Wire("cat", "out")]
    return GraphSpec(blocks, wires)


@pytest.mark.parametrize("name", sorted(FEED_FORWARD))
def test_feed_forward_blocks_match(name, tmp_path):
    export_and_compare(randomised_project(FEED_FORWARD[name], name=name), tmp_path)


@pytest.mark.parametrize("name", sorted(CONV_AND_MERGE))
def test_conv_pool_norm_blocks_match(name, tmp_path):
    export_and_compare(randomised_project(CONV_AND_MERGE[name], name=name), tmp_path)


@pytest.mark.parametrize("make", [residual_graph, image_concat_graph, clip_concat_graph, sequence_merge_graph])
def test_merges_match(make, tmp_path):
    export_and_compare(randomised_project(make(), name=make.__name__), tmp_path)


# ----------------------------------------------------------------------------- summary and metadata
def test_summary_and_metadata(tmp_path):
    spec = chain(("Input", {"shape": (3, 2, 4, 4), "normalize": "symmetric", "clip_stride": 2}),
                 ("Flatten", {}), ("Dense", {"units": 3}), ("GlobalAvgPool", {}),
                 ("Classify", {"class_names": "wave, clap ,stand"}))
    project = randomised_project(spec, name="clips")
    summary = export_and_compare(project, tmp_path)
    assert summary["opset"] >= 17 and summary["trained"] is True and "note" not in summary
    assert summary["inputs"] == [{"name": "input", "shape": ["batch", 3, 2, 4, 4]}]
    assert summary["outputs"][0]["shape"] == ["batch", 3]
    assert summary["outputs"][0]["meaning"] == "class probabilities"
    assert [b["id"] for b in summary["blocks"]] == ["b1", "b2", "b3", "b4"]
    assert summary["blocks"][1]["time_distributed"] is True and "Gemm" in summary["blocks"][1]["onnx"]
    assert summary["blocks"][3]["onnx"] == ["Softmax"]
    json.dumps(summary)  # the CLI prints it with --json

    props = {p.key: p.value for p in onnx.load(summary["path"]).metadata_props}
    meta = json.loads(props["gatescope"])
    assert meta["input"] == {"name": "input", "shape": [3, 2, 4, 4], "normalize": "symmetric", "clip_stride": 2}
    assert meta["class_names"] == ["wave", "clap", "stand"]
    assert meta["task"] == "classification" and meta["trained"] is True


def test_untrained_project_exports_initial_weights_and_says_so(tmp_path):
    project = Project(name="fresh", graph=chain(("Input", {"shape": (4,)}), ("Dense", {"units": 3}),
                                                ("Classify", {})))
    assert not project.trained
    summary = export_and_compare(project, tmp_path)
    assert summary["trained"] is False
    assert "initial" in summary["note"]
    meta = json.loads({p.key: p.value for p in onnx.load(summary["path"]).metadata_props}["gatescope"])
    assert meta["trained"] is False


def test_outputs_are_probabilities(tmp_path):
    project = randomised_project(chain(("Input", {"shape": (4,)}), ("Dense", {"units": 5}), ("Classify", {})))
    path = tmp_path / "p.onnx"
    export_project(project, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (probs,) = session.run(None, {"input": np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)})
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert (probs >= 0).all()


@pytest.mark.parametrize("recurrent", [False, True])
def test_batch_axis_is_free(recurrent, tmp_path):
    blocks = [("Input", {"shape": (5, 3)}), ("Conv1D", {"filters": 2}), ("GlobalAvgPool", {}), ("Regress", {})]
    if recurrent:  # the learned initial state is tiled over whatever batch arrives
        blocks[2] = ("LSTM", {"hidden_size": 3, "initial_state": "learned", "bidirectional": True})
    project = randomised_project(chain(*blocks))
    path = tmp_path / "b.onnx"
    export_project(project, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model = project.build_model()
    for batch in (1, 4, 9):
        x = np.random.default_rng(batch).normal(size=(batch, 5, 3)).astype(np.float32)
        np.testing.assert_allclose(session.run(None, {"input": x})[0], model.predict(x), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- refusals and errors
def test_block_without_translation_is_refused_by_name(tmp_path, monkeypatch):
    monkeypatch.delitem(export_onnx.EMITTERS, "Tanh")
    project = randomised_project(chain(("Input", {"shape": (4,)}), ("Dense", {"units": 3}), ("Tanh", {}),
                                       ("Regress", {})))
    with pytest.raises(ExportError, match=r"block b2 \(Tanh\) has no ONNX equivalent yet"):
        export_project(project, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_unbuildable_graph_is_refused(tmp_path):
    project = Project(name="broken", graph=chain(("Input", {"shape": (4,)}), ("Dense", {"units": 3})))
    with pytest.raises(ExportError, match="cannot be exported"):
        export_project(project, tmp_path / "x.onnx")


def test_missing_onnx_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    project = Project(name="p", graph=chain(("Input", {"shape": (4,)}), ("Regress", {})))
    with pytest.raises(ExportError, match=r"pip install 'gatescope\[onnx\]'"):
        export_project(project, tmp_path / "x.onnx")


def test_unwritable_path_is_an_export_error(tmp_path):
    project = Project(name="p", graph=chain(("Input", {"shape": (4,)}), ("Regress", {})))
    with pytest.raises(ExportError, match="cannot write"):
        export_project(project, tmp_path / "no" / "such" / "folder" / "x.onnx")


# ----------------------------------------------------------------------------- the command line
def test_cli_export_writes_a_model_and_prints_json(tmp_path, capsys):
    from gatescope.studio.cli import main
    from gatescope.studio.project import save_project
    project = randomised_project(chain(("Input", {"shape": (5,)}), ("Dense", {"units": 3}), ("Classify", {})),
                                 name="cli")
    save_project(project, tmp_path / "cli.gscope")
    out = tmp_path / "model.onnx"
    assert main(["export", str(tmp_path / "cli.gscope"), "-o", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["path"] == str(out) and summary["outputs"][0]["name"] == "output"
    onnx.checker.check_model(onnx.load(str(out)))


def test_cli_export_reports_a_refusal(tmp_path, capsys, monkeypatch):
    from gatescope.studio.cli import main
    from gatescope.studio.project import save_project
    monkeypatch.delitem(export_onnx.EMITTERS, "Dense")
    project = randomised_project(chain(("Input", {"shape": (5,)}), ("Dense", {"units": 3}), ("Regress", {})))
    save_project(project, tmp_path / "p.gscope")
    assert main(["export", str(tmp_path / "p.gscope"), "-o", str(tmp_path / "m.onnx")]) == 1
    assert "block b1 (Dense) has no ONNX equivalent yet" in capsys.readouterr().err


# ----------------------------------------------------------------------------- gate layout units
def test_lstm_gate_layout_conversion():
    d, h = 2, 3
    # Every column labelled by its gate: ours i, f, g, o -> ONNX i, o, f, c.
    labels = {"i": 1.0, "f": 2.0, "g": 3.0, "o": 4.0}
    W = np.concatenate([np.full((d, h), labels[k]) for k in "ifgo"], axis=1)
    U = np.concatenate([np.full((h, h), 10 * labels[k]) for k in "ifgo"], axis=1)
    b = np.repeat([labels[k] for k in "ifgo"], h) * 100
    w, r, bias = export_onnx.lstm_to_onnx(W, U, b, b + 1)
    assert w.shape == (4 * h, d) and r.shape == (4 * h, h) and bias.shape == (8 * h,)
    order = [labels[k] for k in "iofg"]
    assert [w[k * h, 0] for k in range(4)] == order
    assert [r[k * h, 0] for k in range(4)] == [10 * v for v in order]
    assert list(bias[::h]) == [100 * v for v in order] + [100 * v + 1 for v in order]
    # A real product: ONNX's x W^T equals our x W, gate by gate.
    x = np.random.default_rng(0).normal(size=(5, d))
    W = np.random.default_rng(1).normal(size=(d, 4 * h))
    w, _, _ = export_onnx.lstm_to_onnx(W, np.zeros((h, 4 * h)), None)
    ours, theirs = x @ W, x @ w.T
    for gate_ours, gate_onnx in zip("ifgo", [0, 2, 3, 1]):
        k = "ifgo".index(gate_ours)
        np.testing.assert_allclose(theirs[:, gate_onnx * h:(gate_onnx + 1) * h], ours[:, k * h:(k + 1) * h])
    assert list(export_onnx.peephole_to_onnx(np.array([1.0]), np.array([2.0]), np.array([3.0]))) == [1, 3, 2]


def test_gru_gate_layout_conversion_and_update_flip():
    d, h = 2, 2
    rng = np.random.default_rng(3)
    W, U = rng.normal(size=(d, 3 * h)), rng.normal(size=(h, 3 * h))
    b, bh = rng.normal(size=3 * h), rng.normal(size=3 * h)
    w, r, bias = export_onnx.gru_to_onnx(W, U, b, bh, flip_update=False)
    # ONNX stacks z, r, h.
    np.testing.assert_allclose(w[:h], W[:, h:2 * h].T)
    np.testing.assert_allclose(w[h:2 * h], W[:, :h].T)
    np.testing.assert_allclose(r[2 * h:], U[:, 2 * h:].T)
    np.testing.assert_allclose(bias[:h], b[h:2 * h])
    np.testing.assert_allclose(bias[3 * h + h:3 * h + 2 * h], bh[:h])
    wf, rf, biasf = export_onnx.gru_to_onnx(W, U, b, bh, flip_update=True)
    np.testing.assert_allclose(wf[:h], -W[:, h:2 * h].T)
    np.testing.assert_allclose(rf[:h], -U[:, h:2 * h].T)
    np.testing.assert_allclose(biasf[:h], -b[h:2 * h])
    np.testing.assert_allclose(biasf[3 * h:4 * h], -bh[h:2 * h])
    np.testing.assert_allclose(wf[h:], w[h:])  # r and n untouched
    # The flip turns ONNX's z into our 1 - z: sigmoid(-a) = 1 - sigmoid(a).
    x, hp = rng.normal(size=(4, d)), rng.normal(size=(4, h))
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    z_ours = sig(x @ W[:, h:2 * h] + hp @ U[:, h:2 * h] + b[h:2 * h] + bh[h:2 * h])
    z_onnx = sig(x @ wf[:h].T + hp @ rf[:h].T + biasf[:h] + biasf[3 * h:4 * h])
    np.testing.assert_allclose(z_onnx, 1 - z_ours, rtol=1e-12)


def test_reorder_gate_blocks_rejects_mismatched_orders():
    with pytest.raises(ValueError):
        export_onnx.reorder_gate_blocks(np.zeros((2, 8)), "ifgo", "iofx")


# ----------------------------------------------------------------------------- bundled examples
def test_the_examples_are_found():
    assert len(EXAMPLES) >= 3, EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=[os.path.basename(p) for p in EXAMPLES])
def test_bundled_examples_export_and_match(path, tmp_path):
    project = load_project(path)
    summary = export_and_compare(project, tmp_path, batch=2)
    assert summary["inputs"][0]["name"] == "input"


# ----------------------------------------------------------------------------- recurrent blocks
def rnn_chain(block_type: str, settings: dict, steps: int = 5, features: int = 3) -> GraphSpec:
    """Input sequence -> the recurrent block -> Dense (per step or on the last state) -> Regress."""
    return chain(("Input", {"shape": (steps, features)}), (block_type, settings), ("Dense", {"units": 2}),
                 ("Regress", {}))


RECURRENT = {
    "rnn_tanh": ("SimpleRNN", {"hidden_size": 4}),
    "rnn_relu_sequences": ("SimpleRNN", {"hidden_size": 4, "activation": "relu", "return_sequences": True}),
    "rnn_bidirectional_concat_learned_h0": ("SimpleRNN", {"hidden_size": 3, "bidirectional": True,
                                                          "initial_state": "learned"}),
    "lstm_standard": ("LSTM", {"hidden_size": 4}),
    "lstm_standard_sequences": ("LSTM", {"hidden_size": 4, "return_sequences": True}),
    "lstm_peephole": ("LSTM", {"hidden_size": 4, "variant": "peephole", "return_sequences": True}),
    "lstm_peephole_learned_state_bidirectional": ("LSTM", {"hidden_size": 3, "variant": "peephole",
                                                           "initial_state": "learned", "bidirectional": True}),
    "lstm_coupled": ("LSTM", {"hidden_size": 4, "variant": "coupled"}),
    "lstm_coupled_bidirectional_sum_sequences_learned": (
        "LSTM", {"hidden_size": 3, "variant": "coupled", "bidirectional": True, "merge": "sum",
                 "return_sequences": True, "initial_state": "learned"}),
    "lstm_bidirectional_concat_sequences": ("LSTM", {"hidden_size": 3, "bidirectional": True,
                                                     "return_sequences": True}),
    "lstm_bidirectional_sum_last": ("LSTM", {"hidden_size": 3, "bidirectional": True, "merge": "sum"}),
    "lstm_learned_initial_state": ("LSTM", {"hidden_size": 4, "initial_state": "learned",
                                            "return_sequences": True}),
    "lstm_pins_forget1_input0": ("LSTM", {"hidden_size": 3, "pin_forget": "1", "pin_input": "0",
                                          "initial_state": "learned"}),
    "lstm_peephole_pin_output": ("LSTM", {"hidden_size": 3, "variant": "peephole", "pin_output": "1",
                                          "return_sequences": True, "bidirectional": True}),
    "lstm_coupled_pin_forget": ("LSTM", {"hidden_size": 3, "variant": "coupled", "pin_forget": "0"}),
    "gru_cho": ("GRU", {"hidden_size": 4}),
    "gru_cho_sequences_learned": ("GRU", {"hidden_size": 4, "return_sequences": True,
                                          "initial_state": "learned"}),
    "gru_pytorch": ("GRU", {"hidden_size": 4, "form": "pytorch", "return_sequences": True}),
    "gru_pytorch_bidirectional_sum_learned": ("GRU", {"hidden_size": 3, "form": "pytorch", "bidirectional": True,
                                                      "merge": "sum", "initial_state": "learned"}),
    "gru_cho_bidirectional_concat_sequences": ("GRU", {"hidden_size": 3, "bidirectional": True,
                                                       "return_sequences": True}),
    "gru_cho_pin_reset": ("GRU", {"hidden_size": 3, "pin_reset": "1", "return_sequences": True}),
    "gru_pytorch_pin_update_learned": ("GRU", {"hidden_size": 3, "form": "pytorch", "pin_update": "0",
                                               "initial_state": "learned", "bidirectional": True}),
    "gru_pytorch_pin_reset0": ("GRU", {"hidden_size": 3, "form": "pytorch", "pin_reset": "0"}),
}


@pytest.mark.parametrize("unroll", [False, True], ids=["onnx-ops", "unrolled"])
@pytest.mark.parametrize("name", sorted(RECURRENT))
def test_recurrent_blocks_match(name, unroll, tmp_path):
    block_type, settings = RECURRENT[name]
    summary = export_and_compare(randomised_project(rnn_chain(block_type, settings), name=name), tmp_path,
                                 unroll_recurrent=unroll)
    ops = summary["blocks"][0]["onnx"]
    native = {"SimpleRNN": "RNN", "LSTM": "LSTM", "GRU": "GRU"}[block_type]
    unrolled = unroll or settings.get("variant") == "coupled" or any(k.startswith("pin_") for k in settings)
    assert (native not in ops) == unrolled, ops
    if unrolled:
        assert not {"RNN", "LSTM", "GRU", "Loop", "Scan"} & set(ops)


@pytest.mark.parametrize("form", ["cho", "pytorch"])
def test_gru_uses_linear_before_reset_of_its_form(form, tmp_path):
    project = randomised_project(rnn_chain("GRU", {"hidden_size": 3, "form": form}))
    path = tmp_path / "gru.onnx"
    export_project(project, path)
    (node,) = [n for n in onnx.load(str(path)).graph.node if n.op_type == "GRU"]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["linear_before_reset"] == (1 if form == "pytorch" else 0)


def test_lstm_long_sequence_with_other_blocks(tmp_path):
    """Conv1D features into a bidirectional LSTM into a per-step classifier, T = 20."""
    spec = chain(("Input", {"shape": (20, 3)}), ("Conv1D", {"filters": 4, "padding": "same"}),
                 ("LSTM", {"hidden_size": 5, "bidirectional": True, "return_sequences": True}),
                 ("GRU", {"hidden_size": 4, "return_sequences": True}), ("Dense", {"units": 3}),
                 ("Classify", {}))
    export_and_compare(randomised_project(spec, name="stack"), tmp_path)


def test_per_frame_cnn_into_lstm(tmp_path):
    """Seed 001's wiring: a Conv2D over every frame of a clip, pooled, into an LSTM."""
    spec = chain(("Input", {"shape": (4, 2, 6, 6)}), ("Conv2D", {"filters": 3, "kernel_size": 3}),
                 ("ReLU", {}), ("GlobalAvgPool", {}), ("LSTM", {"hidden_size": 4}), ("Dense", {"units": 3}),
                 ("Classify", {"class_names": "a,b,c"}))
    summary = export_and_compare(randomised_project(spec, name="clip_lstm"), tmp_path)
    assert summary["blocks"][0]["time_distributed"] is True


CONVLSTM = {
    "convlstm_last": {"filters": 2, "kernel_size": 3},
    "convlstm_sequences_learned": {"filters": 2, "kernel_size": 3, "return_sequences": True,
                                   "initial_state": "learned"},
    "convlstm_bidirectional_concat": {"filters": 2, "kernel_size": 1, "bidirectional": True},
    "convlstm_bidirectional_sum_pinned": {"filters": 2, "kernel_size": 3, "bidirectional": True, "merge": "sum",
                                          "return_sequences": True, "pin_forget": "1"},
}


@pytest.mark.parametrize("name", sorted(CONVLSTM))
def test_convlstm2d_matches(name, tmp_path):
    spec = chain(("Input", {"shape": (3, 2, 5, 4)}), ("ConvLSTM2D", CONVLSTM[name]), ("Regress", {}))
    export_and_compare(randomised_project(spec, name=name), tmp_path)


# ----------------------------------------------------------------------------- state wires
def state_wire_graph(encoder: tuple[str, dict], decoder: tuple[str, dict], bridge: bool = False) -> GraphSpec:
    """Input (4 + 3 steps) -> TimeSlice each -> encoder --state--> decoder (every step) -> Dense -> Regress;
    with ``bridge`` the state comes from a Dense of the encoder's output instead."""
    blocks = [Block("in", "Input", {"shape": (7, 3)}), Block("question", "TimeSlice", {"start": 0, "length": 4}),
              Block("answer", "TimeSlice", {"start": 4, "length": 3}),
              Block("enc", encoder[0], encoder[1]), Block("dec", decoder[0], {"return_sequences": True, **decoder[1]}),
              Block("dense", "Dense", {"units": 2}), Block("out", "Regress", {})]
    wires = [Wire("in", "question"), Wire("in", "answer"), Wire("question", "enc"), Wire("answer", "dec", 0),
             Wire("dec", "dense"), Wire("dense", "out")]
    if bridge:
        blocks.append(Block("bridge", "Dense", {"units": decoder[1]["hidden_size"]}))
        wires += [Wire("enc", "bridge"), Wire("bridge", "dec", 1)]
    else:
        wires.append(Wire("enc", "dec", 1))
    return GraphSpec(blocks, wires)


@pytest.mark.parametrize("name,encoder,decoder,bridge", [
    ("lstm_to_lstm", ("LSTM", {"hidden_size": 4, "return_sequences": True}), ("LSTM", {"hidden_size": 4}), False),
    ("peephole_lstm_to_lstm", ("LSTM", {"hidden_size": 3, "variant": "peephole"}), ("LSTM", {"hidden_size": 3}), False),
    ("gru_to_rnn", ("GRU", {"hidden_size": 3, "form": "pytorch"}), ("SimpleRNN", {"hidden_size": 3}), False),
    ("dense_to_lstm", ("LSTM", {"hidden_size": 5}), ("LSTM", {"hidden_size": 3}), True),
])
def test_state_wires_export_and_match(name, encoder, decoder, bridge, tmp_path):
    export_and_compare(randomised_project(state_wire_graph(encoder, decoder, bridge), name=name), tmp_path)


def test_an_unrolled_block_on_a_state_wire_is_refused_by_name(tmp_path):
    spec = state_wire_graph(("LSTM", {"hidden_size": 3}), ("LSTM", {"hidden_size": 3, "pin_forget": "1"}))
    with pytest.raises(ExportError, match="block dec \\(LSTM\\) is unrolled in the export.*does not take or hand over"):
        export_project(randomised_project(spec), tmp_path / "pinned.onnx")
