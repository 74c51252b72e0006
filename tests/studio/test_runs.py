"""The run history in the project file: what a run keeps, the settings diff, the members written
and read back, every value checked on opening, and older files opening unchanged."""
import io
import json
import zipfile
from dataclasses import replace

import numpy as np
import pytest

from gatescope.assets import example_path
from gatescope.compute.graph import GraphSpec, Model
from gatescope.compute.train import TrainSettings, TrainState
from gatescope.studio.compare_choice import CompareChoice
from gatescope.studio.project import Project, ProjectError, load_project, parse_project, save_project
from gatescope.studio.runs import MAX_RUNS, new_run, settings_diff


def graph(block_type="LSTM", **settings):
    return GraphSpec.chain(("Input", {"shape": [8, 8]}), (block_type, {"hidden_size": 6, **settings}),
                           ("Dense", {"units": 10}), ("Classify", {}))


def state(epochs=2, steps=3, first=0):
    history = [{"epoch": e + 1, "train_loss": 2.0 - e * 0.1, "train_accuracy": 0.5, "val_loss": 2.1 - e * 0.1,
                "val_accuracy": 0.4 + e * 0.1, "lr": 0.001, "seconds": 0.5} for e in range(first + epochs)]
    numbers = list(range((first + epochs) * steps))
    return TrainState(epochs_done=first + epochs, history=history, step_numbers=numbers,
                      step_losses=[2.0 - 0.01 * n for n in numbers], steps_per_epoch=steps)


def a_run(runs, g=None, training=None, first=0, weights=None, **kw):
    g = g or graph()
    return new_run(runs, kind=kw.get("kind", "train"), label=kw.get("label", ""), ended="finished", graph=g,
                   training=training or TrainSettings(), state=state(first=first), first_epoch=first,
                   test={"loss": 0.5, "accuracy": 0.9, "samples": 100}, seconds=1.5, parameters=123,
                   weights=weights)


def test_the_settings_diff_says_what_changed():
    before, after = graph(), graph("GRU", hidden_size=8)
    after.blocks.append(after.blocks[-1].__class__("extra", "ReLU", {}))
    changes = settings_diff(before, TrainSettings(), after, TrainSettings(learning_rate=0.01, clip_norm=1.0))
    assert "b1: LSTM → GRU" in changes and "b1 hidden_size 6 → 8" in changes
    assert "added ReLU extra" in changes
    assert "learning_rate 0.001 → 0.01" in changes and "clip_norm 0 → 1" in changes
    assert settings_diff(before, TrainSettings(), graph(), TrainSettings()) == []
    # a setting left at its default reads the same as one written out
    assert settings_diff(graph(), TrainSettings(), graph(variant="standard"), TrainSettings()) == []


def test_a_run_keeps_its_own_epochs_and_steps_and_is_compared_with_the_one_before():
    first = a_run([])
    assert (first.number, first.after, first.describe_changes()) == (1, None, "first run")
    second = a_run([first], training=TrainSettings(learning_rate=0.01), first=2)
    assert (second.number, second.after) == (2, 1)
    assert second.describe_changes() == "vs run 1: learning_rate 0.001 → 0.01"
    assert [e["epoch"] for e in second.epochs] == [3, 4]
    np.testing.assert_array_equal(second.step_numbers, np.arange(6, 12))
    assert second.metric("val_accuracy") == pytest.approx(0.7) and second.metric("test_accuracy") == 0.9
    assert a_run([first]).describe_changes() == "as run 1"
    assert second.title == "run 2" and a_run([second], label="GRU", kind="compare").title == "run 3 · GRU"


def project_with_runs(tmp_path, keep=True):
    g = graph()
    model = Model(g, seed=0)
    runs = [a_run([], g, weights=model.state_dict() if keep else None)]
    runs.append(a_run(runs, g, training=TrainSettings(learning_rate=0.01), first=2,
                      weights=model.state_dict() if keep else None))
    project = Project(name="p", graph=g, runs=runs, keep_run_weights=keep,
                      compare=CompareChoice("swap", "b1", ("LSTM", "GRU"), epochs=3),
                      dataset={"kind": "builtin", "name": "digits", "params": {"layout": "rows"}})
    return save_project(project, tmp_path / "p.gscope"), project


@pytest.mark.parametrize("keep", [True, False])
def test_runs_are_written_and_read_back(tmp_path, keep):
    path, written = project_with_runs(tmp_path, keep)
    read = load_project(path)
    assert read.keep_run_weights is keep and len(read.runs) == 2
    assert read.compare == written.compare
    for mine, theirs in zip(written.runs, read.runs):
        assert (theirs.number, theirs.when, theirs.changes, theirs.epochs, theirs.test) == \
               (mine.number, mine.when, mine.changes, mine.epochs, mine.test)
        assert theirs.graph.to_dict() == mine.graph.to_dict() and theirs.training == mine.training
        np.testing.assert_array_equal(theirs.step_losses, mine.step_losses)
        assert set(theirs.weights) == set(mine.weights)
        for name, value in mine.weights.items():
            np.testing.assert_array_equal(theirs.weights[name], value)


def test_older_files_open_unchanged():
    project = load_project(example_path("digits-cnn"))
    assert project.runs == [] and project.keep_run_weights is True and project.compare is None
    with zipfile.ZipFile(example_path("digits-cnn")) as z:
        assert "runs.json" not in z.namelist()


def rewritten(path, member, change):
    """The bytes of ``path`` with ``member`` replaced by ``change(old bytes)``."""
    out = io.BytesIO()
    with zipfile.ZipFile(path) as old, zipfile.ZipFile(out, "w") as new:
        for info in old.infolist():
            data = old.read(info)
            new.writestr(info.filename, change(data) if info.filename == member else data)
    return out.getvalue()


def edit_runs(path, edit):
    def change(data):
        meta = json.loads(data)
        edit(meta)
        return json.dumps(meta).encode()
    return rewritten(path, "runs.json", change)


@pytest.mark.parametrize("edit, words", [
    (lambda m: m["runs"][0].update(label=5), "runs[0].label must be a string"),
    (lambda m: m["runs"][0]["epochs"][0].update(val_loss=float("nan")), "runs.json holds NaN"),
    (lambda m: m["runs"][0]["epochs"][0].update(val_loss=1e400), "every number in a project file must be finite"),
    (lambda m: m["runs"][0]["epochs"][0].update(val_loss="low"), "val_loss must be a finite number or null"),
    (lambda m: m["runs"][0].update(seconds=-1), "seconds must be a finite number of 0 or more"),
    (lambda m: m["runs"][0].update(when="yesterday"), "must be an ISO 8601 date"),
    (lambda m: m["runs"][0].update(kind="cooking"), "kind must be train or compare"),
    (lambda m: m["runs"][0].update(changes=["ok", 3]), "changes must be a list"),
    (lambda m: m["runs"][1].update(number=1, after=None), "must be larger than the run before's"),
    (lambda m: m["runs"][1].update(after=7), "after must be null or the number of an earlier run"),
    (lambda m: m["runs"][0].update(surprise=1), "unknown keys surprise"),
    (lambda m: m["runs"][0]["graph"]["blocks"][1].update(type="Teleporter"), "unknown type 'Teleporter'"),
    (lambda m: m["runs"][0]["training"].update(learning_rate=-1), "learning_rate must be above 0"),
    (lambda m: m["runs"][0].update(test={"loss": "low"}), "test.loss must be a finite number"),
    (lambda m: m["runs"].extend([m["runs"][0]] * MAX_RUNS), f"at most {MAX_RUNS} runs"),
    (lambda m: m.update(keep_weights="yes"), "keep_weights must be true or false"),
    (lambda m: m["runs"][0].update(has_weights=False), "has_weights is false but runs.npz holds its weights"),
])
def test_a_bad_run_history_is_refused_with_one_sentence(tmp_path, edit, words):
    path, _ = project_with_runs(tmp_path)
    with pytest.raises(ProjectError) as caught:
        parse_project(edit_runs(path, edit), "p.gscope")
    assert words in str(caught.value) and str(caught.value).startswith("p.gscope: ")


def npz_with(arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@pytest.mark.parametrize("arrays, words", [
    ({"run1/global_step": np.array([0, 2, 1]), "run1/loss": np.ones(3, np.float32)}, "increase"),
    ({"run1/global_step": np.arange(3), "run1/loss": np.array([1, np.inf, 1], np.float32)},
     "loss must hold finite numbers"),
    ({"run9/global_step": np.arange(3), "run9/loss": np.ones(3, np.float32)}, "belongs to no run"),
])
def test_bad_run_arrays_are_refused(tmp_path, arrays, words):
    path, _ = project_with_runs(tmp_path, keep=False)
    with pytest.raises(ProjectError, match=words):
        parse_project(rewritten(path, "runs.npz", lambda _: npz_with(arrays)), "p.gscope")


def test_run_weights_must_fit_the_run_model(tmp_path):
    path, project = project_with_runs(tmp_path)
    arrays = {f"run{r.number}/{part}": v for r in project.runs
              for part, v in (("global_step", r.step_numbers), ("loss", r.step_losses))}
    arrays.update({f"run{r.number}/weights/{k}": v for r in project.runs for k, v in r.weights.items()})
    arrays["run1/weights/b1/W"] = np.zeros((3, 3), np.float32)
    with pytest.raises(ProjectError, match="run 1: the saved array b1/W has shape"):
        parse_project(rewritten(path, "runs.npz", lambda _: npz_with(arrays)), "p.gscope")


@pytest.mark.parametrize("compare, words", [
    ({"kind": "swap", "block": "b1", "types": ["LSTM"]}, "2 to 6 types"),
    ({"kind": "vary", "block": "b1", "setting": "hidden_size", "values": [1, float("inf")]}, "must be finite"),
    ({"kind": "swap", "block": "", "types": ["LSTM", "GRU"]}, "block must be a non-empty string"),
    ({"kind": "dance", "block": "b1"}, "kind must be swap or vary"),
    ({"kind": "swap", "block": "b1", "types": ["LSTM", "GRU"], "epochs": -1}, "epochs must be a whole number"),
])
def test_a_bad_saved_comparison_is_refused(tmp_path, compare, words):
    path, _ = project_with_runs(tmp_path)

    def change(data):
        meta = json.loads(data)
        meta["compare"] = compare
        return json.dumps(meta).encode()
    with pytest.raises(ProjectError, match=words):
        parse_project(rewritten(path, "project.json", change), "p.gscope")


def test_a_run_history_survives_a_save_of_stale_weights(tmp_path):
    """Runs belong to the project, not to its current weights: dropping stale weights keeps them."""
    path, project = project_with_runs(tmp_path)
    project = replace(project, weights={}, optimizer={})
    assert len(load_project(save_project(project, tmp_path / "q.gscope")).runs) == 2


def test_a_run_history_that_could_not_be_opened_is_not_saved(tmp_path):
    path, project = project_with_runs(tmp_path)
    project.runs[1].changes = ["fine", "x" * 3000]
    with pytest.raises(ProjectError, match="changes must be a list of at most 200 strings"):
        save_project(project, path)
    assert len(load_project(path).runs) == 2            # the file on disk is as it was
