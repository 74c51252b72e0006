"""Project files: round trip, atomic saves, and every kind of damaged or hostile file."""
import io
import json
import os
import zipfile

import numpy as np
import pytest

from gatescope.compute.graph import GraphSpec
from gatescope.compute.train import TrainSettings
from gatescope.studio import project as project_module
from gatescope.studio.project import Project, ProjectError, load_project, parse_project, save_project


def small_project(trained=True) -> Project:
    graph = GraphSpec.chain(("Input", {"shape": [64]}), ("Dense", {"units": 16}), ("Tanh", {}),
                            ("Dense", {"units": 10}), ("Classify", {}))
    p = Project(name="tiny", graph=graph, positions={f"b{i}": (i * 180.0, 40.5) for i in range(5)},
                training=TrainSettings(epochs=3, learning_rate=0.01, optimizer="sgd", nesterov=True),
                dataset={"kind": "builtin", "name": "digits", "params": {"layout": "vector"}},
                panels={"dock_state": "AAAA", "probe_sample": 3})
    if trained:
        p.weights = p.build_model().state_dict()
        p.optimizer = {"b1/W/velocity": np.full((64, 16), 0.25, np.float32), "step_count": np.array(7)}
        p.history = [{"epoch": 1, "train_loss": 1.5, "val_loss": None, "val_accuracy": 0.5}]
        p.trainer = {"epochs_done": 1, "best_val_loss": None, "epochs_without_improvement": 0,
                     "steps_per_epoch": 4}
        p.step_numbers = np.arange(4, dtype=np.int64)
        p.step_losses = np.array([2.25, 2.0, 1.5, 1.25], np.float32)
    return p


def test_round_trip_keeps_everything_and_weights_bit_identical(tmp_path):
    p = small_project()
    first = save_project(p, tmp_path / "a.gscope")
    q = load_project(first)
    save_project(q, tmp_path / "b.gscope")
    r = load_project(tmp_path / "b.gscope")
    for other in (q, r):
        assert other.graph == p.graph
        assert other.positions == p.positions
        assert other.training == p.training
        assert other.dataset == p.dataset and other.panels == p.panels
        assert other.history == p.history and other.trainer == p.trainer
        assert other.weights.keys() == p.weights.keys()
        for k in p.weights:
            assert other.weights[k].dtype == p.weights[k].dtype
            assert other.weights[k].tobytes() == p.weights[k].tobytes()
        np.testing.assert_array_equal(other.optimizer["b1/W/velocity"], p.optimizer["b1/W/velocity"])
        np.testing.assert_array_equal(other.step_numbers, p.step_numbers)
        np.testing.assert_array_equal(other.step_losses, p.step_losses)
        assert other.steps_per_epoch == 4
        state = other.train_state()                    # what a resumed run continues from
        assert state.step_numbers == [0, 1, 2, 3] and state.step_losses == [2.25, 2.0, 1.5, 1.25]


def test_the_text_blocks_round_trip_with_their_weights(tmp_path):
    """Embedding (with its padding id) and GlobalMaxPool1D reopen as saved and compute the same."""
    graph = GraphSpec.chain(("Input", {"shape": [7]}), ("Embedding", {"vocabulary": 9, "dimension": 3, "padding_id": 0}),
                            ("Conv1D", {"filters": 2, "kernel_size": 2}), ("GlobalMaxPool1D", {}),
                            ("Dense", {"units": 2}), ("Classify", {}))
    p = Project(name="words", graph=graph)
    model = p.build_model(seed=3)              # not the seed a reopened project builds from
    p.weights = model.state_dict()
    q = load_project(save_project(p, tmp_path / "words.gscope"))
    assert q.graph == p.graph and q.graph.blocks[1].settings["padding_id"] == 0
    ids = np.random.default_rng(4).integers(0, 9, (5, 7)).astype(np.float32)
    np.testing.assert_array_equal(q.build_model().predict(ids), model.predict(ids))


def test_untrained_project_round_trips(tmp_path):
    p = small_project(trained=False)
    q = load_project(save_project(p, tmp_path / "u.gscope"))
    assert not q.trained and q.graph == p.graph


def test_save_is_atomic_when_the_rename_fails(tmp_path, monkeypatch):
    path = tmp_path / "keep.gscope"
    save_project(small_project(), path)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(project_module.os, "replace", broken_replace)
    with pytest.raises(ProjectError, match="No space left"):
        save_project(small_project(trained=False), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["keep.gscope"], "no temporary file is left behind"


def _zip(members: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in members.items():
            z.writestr(name, data if isinstance(data, (bytes, str)) else json.dumps(data))
    return buffer.getvalue()


def _members(p=None) -> dict:
    data = project_module._pack(p or small_project())
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {n: z.read(n) for n in z.namelist()}


def _meta(**changes) -> dict:
    meta = json.loads(_members()["project.json"])
    meta.update(changes)
    return meta


BAD_FILES = {
    "not a zip": (b"this is a text file, not a project", "not a zip archive"),
    "empty": (b"", "not a zip archive"),
    "missing project.json": (_zip({"weights.npz": b""}), "has no project.json"),
    "escaping member": (_zip({"project.json": _meta(), "../evil.txt": b"x"}), "points outside the archive"),
    "absolute member": (_zip({"project.json": _meta(), "/etc/passwd": b"x"}), "points outside the archive"),
    "invalid json": (_zip({"project.json": b"{not json"}), "not valid JSON"),
    "json not an object": (_zip({"project.json": [1, 2]}), "must be a JSON object"),
    "foreign json": (_zip({"project.json": {"hello": 1}}), "this is not a GateScope project"),
    "newer schema": (_zip({"project.json": _meta(schema_version=99)}), "saved by a newer GateScope"),
    "blocks wrong type": (_zip({"project.json": _meta(graph={"blocks": "x", "wires": []})}),
                          "graph.blocks must be a list"),
    "unknown block": (_zip({"project.json": _meta(graph={"blocks": [{"id": "a", "type": "Teleporter"}],
                                                         "wires": []})}), "unknown type 'Teleporter'"),
    "wire to nowhere": (_zip({"project.json": _meta(graph={"blocks": [{"id": "a", "type": "Input"}],
                                                           "wires": [{"src": "a", "dst": "zz"}]})}),
                        "joins a block that does not exist"),
    "bad position": (_zip({"project.json": _meta(positions={"b0": ["x", 1]})}), "must be two numbers"),
    "bad training": (_zip({"project.json": _meta(training={"epochs": "many"})}), "epochs must be a int"),
    "bad dataset": (_zip({"project.json": _meta(dataset=["digits"])}), "dataset must be an object"),
    "bad steps per epoch": (_zip({"project.json": _meta(trainer={"epochs_done": 1, "steps_per_epoch": "4"})}),
                            "steps_per_epoch must be a whole number"),
    "steps of two lengths": (_zip({"project.json": _meta(), "steps.npz": project_module._npz_bytes(
        {"global_step": np.arange(5), "loss": np.ones(4, np.float32)})}), "two lists of the same length"),
    "steps missing the losses": (_zip({"project.json": _meta(), "steps.npz": project_module._npz_bytes(
        {"global_step": np.arange(5)})}), "exactly the arrays global_step and loss"),
    "steps not increasing": (_zip({"project.json": _meta(), "steps.npz": project_module._npz_bytes(
        {"global_step": np.array([0, 2, 1]), "loss": np.ones(3, np.float32)})}), "whole step numbers that increase"),
    "fractional steps": (_zip({"project.json": _meta(), "steps.npz": project_module._npz_bytes(
        {"global_step": np.array([0.0, 0.5]), "loss": np.ones(2, np.float32)})}), "whole step numbers"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_give_a_clear_message(tmp_path, case):
    data, message = BAD_FILES[case]
    path = tmp_path / "bad.gscope"
    path.write_bytes(data)
    with pytest.raises(ProjectError, match=message):
        load_project(path)
    assert os.listdir(tmp_path) == ["bad.gscope"], "nothing is written"


def test_truncated_file(tmp_path):
    data = project_module._pack(small_project())
    path = tmp_path / "cut.gscope"
    for cut in (len(data) // 2, len(data) - 30, 200):
        path.write_bytes(data[:cut])
        with pytest.raises(ProjectError, match="not a zip archive|damaged|truncated"):
            load_project(path)


def test_corrupted_member_bytes(tmp_path):
    members = _members()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, value in members.items():
            z.writestr(name, value)
    data = bytearray(buffer.getvalue())
    start = data.find(b"weights.npz") + 40  # inside the compressed weights
    data[start:start + 20] = bytes(20)
    with pytest.raises(ProjectError, match="damaged|corrupt|unreadable|truncated"):
        parse_project(bytes(data))


def test_arrays_with_wrong_shapes_are_refused():
    members = _members()
    buffer = io.BytesIO()
    np.savez(buffer, **{"b1/W": np.zeros((3, 3), np.float32)})
    members["weights.npz"] = buffer.getvalue()
    with pytest.raises(ProjectError, match=r"b1/W has shape \(3, 3\), but the block needs \(64, 16\)"):
        parse_project(_zip(members))


def test_weights_of_unknown_blocks_are_refused():
    members = _members()
    buffer = io.BytesIO()
    np.savez(buffer, **{"ghost/W": np.zeros(3, np.float32)})
    members["weights.npz"] = buffer.getvalue()
    with pytest.raises(ProjectError, match="no block 'ghost'"):
        parse_project(_zip(members))


def test_pickled_arrays_are_never_loaded():
    members = _members()
    buffer = io.BytesIO()
    np.savez(buffer, **{"b1/W": np.array([{"evil": 1}], dtype=object)})
    members["weights.npz"] = buffer.getvalue()
    with pytest.raises(ProjectError, match="object arrays .* never loaded"):
        parse_project(_zip(members))


def test_array_header_claiming_more_than_stored_is_refused():
    members = _members()
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                      "shape": (100000, 100000)})
        z.writestr("b1/W.npy".replace("/", "_"), header.getvalue() + b"\0" * 16)
    members["weights.npz"] = inner.getvalue()
    with pytest.raises(ProjectError, match=r"declares shape \(100000, 100000\) .* but stores 144 bytes; it is damaged"):
        parse_project(_zip(members))


def test_absurd_declared_sizes_are_refused(monkeypatch):
    monkeypatch.setattr(project_module, "MAX_JSON_BYTES", 100)
    with pytest.raises(ProjectError, match="far more than a project description needs"):
        parse_project(_zip({"project.json": _meta()}))
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("project.json", json.dumps(_meta()))
        z.writestr("history.json", b" " * (50 * 2**20))  # 50 MB of spaces compress > 1000x
    with pytest.raises(ProjectError, match="absurd"):
        parse_project(bomb.getvalue())


def test_missing_and_folder_paths(tmp_path):
    with pytest.raises(ProjectError, match="does not exist"):
        load_project(tmp_path / "nope.gscope")
    with pytest.raises(ProjectError, match="is a folder"):
        load_project(tmp_path)


def test_saved_files_get_ordinary_permissions(tmp_path):
    path = save_project(small_project(trained=False), tmp_path / "p.gscope")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    path.chmod(0o640)
    save_project(small_project(trained=False), path)
    assert path.stat().st_mode & 0o777 == 0o640, "a re-save keeps the file's mode"
