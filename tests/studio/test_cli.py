"""The command line: train, predict, exit codes and one-line errors, JSON on the last line."""
import json
import shutil

import numpy as np
import pytest

from gatescope.assets import example_path
from gatescope.compute.graph import GraphSpec
from gatescope.studio.cli import main
from gatescope.studio.project import Project, load_project, save_project
from gatescope.compute.train import TrainSettings


def last_json(capsys) -> dict:
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


@pytest.fixture
def tiny(tmp_path):
    graph = GraphSpec.chain(("Input", {"shape": [64]}), ("Dense", {"units": 32}), ("ReLU", {}),
                            ("Dense", {"units": 10}), ("Classify", {}))
    p = Project(name="tiny", graph=graph, training=TrainSettings(epochs=2, learning_rate=3e-3),
                dataset={"kind": "builtin", "name": "digits", "params": {"layout": "vector"}})
    return save_project(p, tmp_path / "tiny.gscope")


def test_digits_cnn_example_reaches_its_target(tmp_path, capsys):
    path = shutil.copy(example_path("digits-cnn"), tmp_path / "d.gscope")
    assert main(["train", str(path), "--json"]) == 0
    result = last_json(capsys)
    assert result["test_accuracy"] >= 0.97
    assert result["epochs"] == 15 and result["device"] == "cpu" and result["seconds"] > 0
    assert load_project(path).trained


def test_train_in_place_then_resume_and_out(tiny, tmp_path, capsys):
    assert main(["train", str(tiny), "--epochs", "1", "--json"]) == 0
    assert last_json(capsys)["epochs"] == 1
    out = tmp_path / "more.gscope"
    assert main(["train", str(tiny), "--epochs", "2", "--out", str(out), "--json"]) == 0
    result = last_json(capsys)
    assert result["epochs"] == 3 and result["epochs_run"] == 2
    assert len(load_project(out).history) == 3 and len(load_project(tiny).history) == 1


def test_predict_writes_probabilities(tiny, tmp_path, capsys):
    assert main(["train", str(tiny), "--json"]) == 0
    capsys.readouterr()
    x = np.random.default_rng(0).random((5, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["predict", str(tiny), "--input", str(tmp_path / "x.npy"),
                 "--output", str(tmp_path / "y.npy"), "--json"]) == 0
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (5, 10)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)
    assert last_json(capsys)["predicted"] == y.argmax(axis=1).tolist()


def test_failures_are_one_clear_line_with_exit_1(tiny, tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing.gscope")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]

    assert main(["predict", str(tiny), "--input", "x.npy", "--output", "y.npy"]) == 1
    assert "has no trained weights; train it first" in capsys.readouterr().err

    assert main(["train", str(tiny), "--epochs", "1"]) == 0
    np.save(tmp_path / "wrong.npy", np.zeros((2, 7), np.float32))
    assert main(["predict", str(tiny), "--input", str(tmp_path / "wrong.npy"), "--output", str(tmp_path / "y.npy")]) == 1
    assert "the model takes numbers shaped (N,) + (64,)" in capsys.readouterr().err

    (tmp_path / "junk.gscope").write_text("not a project")
    assert main(["train", str(tmp_path / "junk.gscope")]) == 1
    assert "not a zip archive" in capsys.readouterr().err


def test_data_that_does_not_fit_is_a_clear_error(tmp_path, capsys):
    graph = GraphSpec.chain(("Input", {"shape": [10]}), ("Dense", {"units": 10}), ("Classify", {}))
    p = save_project(Project(graph=graph, dataset={"kind": "builtin", "name": "digits",
                                                   "params": {"layout": "vector"}}), tmp_path / "p.gscope")
    assert main(["train", str(p)]) == 1
    assert "set the Input's shape to 64" in capsys.readouterr().err


def test_invalid_graph_is_a_clear_error(tmp_path, capsys):
    graph = GraphSpec.chain(("Input", {"shape": [64]}), ("Dense", {"units": 10}))
    p = save_project(Project(graph=graph), tmp_path / "p.gscope")
    assert main(["train", str(p)]) == 1
    assert "no output block" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["train", "x.gscope", "--device", "tpu"])
    assert exc.value.code == 2


def test_gpu_request_without_a_gpu_fails_clearly(tiny, capsys, monkeypatch):
    from gatescope.compute import backend
    monkeypatch.setattr(backend, "gpu_unavailable_reason", lambda: "CuPy is not installed")
    assert main(["train", str(tiny), "--device", "gpu"]) == 1
    assert "GPU was asked for but cannot be used: CuPy is not installed" in capsys.readouterr().err


def test_relative_dataset_paths_are_read_from_the_project_folder(tmp_path):
    from gatescope.studio.session import dataset_reference
    p = Project(dataset={"kind": "file", "path": "data/x.npz"})
    p.path = tmp_path / "p.gscope"
    assert dataset_reference(p)["path"] == str(tmp_path / "data" / "x.npz")
    p.dataset = {"kind": "builtin", "name": "video-folder", "params": {"folder": "clips", "frames": 8}}
    ref = dataset_reference(p)
    assert ref["params"] == {"folder": str(tmp_path / "clips"), "frames": 8}
    assert p.dataset["params"]["folder"] == "clips", "the project keeps its relative path"


def test_bench_reports_ours_beside_the_bare_gemms(capsys, monkeypatch):
    """``gatescope bench --json``: a row per case with both timings and their ratio (the
    figures themselves are measured, never asserted); an unknown group is a clear error."""
    monkeypatch.setenv("GATESCOPE_DEVICE", "cpu")
    assert main(["bench", "--quick", "--only", "rnn", "--json"]) == 0
    summary = last_json(capsys)
    names = [row["name"] for row in summary["rows"]]
    assert names == ["RNN H=512 B=32 T=10 forward", "RNN H=512 B=32 T=10 forward+backward"]
    for row in summary["rows"]:
        assert row["ours_s"] > 0 and row["gemm_s"] > 0
        assert row["vs_gemm"] == pytest.approx(row["ours_s"] / row["gemm_s"])
    assert summary["geomean_vs_gemm"] == pytest.approx(
        (summary["rows"][0]["vs_gemm"] * summary["rows"][1]["vs_gemm"]) ** 0.5)
    assert summary["groups"]["rnn"]["geomean_vs_gemm"] == pytest.approx(summary["geomean_vs_gemm"])
    assert "recurrent" not in summary["groups"]               # one recurrent group: no family line
    assert main(["bench", "--only", "lstmm"]) == 1
    assert "no benchmark group lstmm" in capsys.readouterr().err


def test_bench_prints_the_algorithm_of_each_conv_row(capsys, monkeypatch):
    from gatescope.compute.bench import conv as bench_conv
    monkeypatch.setenv("GATESCOPE_DEVICE", "cpu")
    monkeypatch.setattr(bench_conv, "CPU_SHAPES", (("9x9x2->3 5x5 N=2", 2, 9, 3, 5, 2, 1, 2),))
    assert main(["bench", "--quick", "--only", "conv2d"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[-1] == "algorithm"
    assert [line.split()[-1] for line in lines if line.startswith("conv2d ")] == ["im2col", "im2col"]
