"""Projects from data: the templates fit each kind of data, `gatescope new` writes them, data
paths inside the project's folder are saved relative to it."""
import json
import zipfile

import numpy as np
import pytest

from gatescope.compute.datasets import Dataset, load
from gatescope.compute.graph import analyse
from gatescope.compute.train import Trainer
from gatescope.studio import templates
from gatescope.studio.cli import main
from gatescope.studio.project import Project, load_project, save_project
from gatescope.studio.session import dataset_reference, portable_reference


def vectors(n=60, features=5, classes=3, labels=None):
    rng = np.random.default_rng(0)
    y = np.arange(n) % classes if labels is None else labels
    return Dataset("v", rng.standard_normal((n, features)).astype(np.float32), y)


@pytest.mark.parametrize("kind,shape,names", [
    ("vector", (7,), ["mlp", "cnn1d", "gru", "lstm"]),
    ("sequence", (9, 2), ["mlp", "cnn1d", "gru", "lstm"]),
    ("image", (3, 12, 10), ["mlp", "cnn"]),
    ("clip", (4, 1, 8, 8), ["cnn-lstm"]),
])
def test_every_template_fits_its_kinds_of_data_and_trains_a_step(kind, shape, names):
    rng = np.random.default_rng(1)
    data = Dataset("d", rng.random((24,) + shape).astype(np.float32), np.arange(24) % 3, class_names=["a", "b", "c"])
    assert templates.data_kind(shape) == kind and templates.templates_for(kind) == names
    for name in names:
        project = templates.new_project(data, {"kind": "file", "path": "/data/d.npz"}, name)
        analysis = analyse(project.graph)
        assert analysis.ok, analysis.errors()
        assert analysis.info["b0"].out_shape == shape
        head = project.graph.blocks[-1]
        assert head.type == "Classify" and head.settings["class_names"] == "a,b,c"
        assert project.graph.blocks[-2].settings["units"] == 3
        trainer = Trainer(project.build_model(), data, project.training)
        events = list(trainer.run(1))
        assert events[-1].kind == "finished", events[-1].data


def test_regression_and_per_step_labels():
    rng = np.random.default_rng(2)
    numbers = Dataset("r", rng.random((30, 4)).astype(np.float32), rng.random(30).astype(np.float32), "regression")
    project = templates.new_project(numbers, {}, None)
    assert [b.type for b in project.graph.blocks][-2:] == ["Dense", "Regress"]
    assert project.graph.blocks[-2].settings["units"] == 1
    per_step = Dataset("s", rng.random((30, 6, 2)).astype(np.float32), rng.integers(0, 2, (30, 6)))
    project = templates.new_project(per_step, {}, "gru")
    assert analyse(project.graph).info[project.graph.blocks[-1].id].out_shape == (6, 2)
    with pytest.raises(templates.TemplateError, match="one per time step.*choose cnn1d, gru, lstm"):
        templates.new_project(per_step, {}, "mlp")


def test_a_template_that_does_not_fit_names_those_that_do():
    with pytest.raises(templates.TemplateError, match="takes images, but these samples are vectors.*mlp, cnn1d"):
        templates.new_project(vectors(), {}, "cnn")
    with pytest.raises(templates.TemplateError, match="no template 'resnet'"):
        templates.new_project(vectors(), {}, "resnet")


def test_training_settings_follow_the_data_size():
    small = templates.training_settings(vectors(100), templates.TEMPLATES["mlp"])
    big = templates.training_settings(vectors(40000), templates.TEMPLATES["gru"])
    assert small.batch_size == 16 and small.epochs == 40 and small.clip_norm == 0
    assert big.batch_size == 64 and big.epochs == 8 and big.clip_norm == 5.0
    assert templates.training_settings(vectors(), templates.TEMPLATES["mlp"], 3, 8, 0.01).epochs == 3


def test_describe_says_classes_counts_and_warnings(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("".join(f"{i % 2 * 4 + 3},{i}\n" for i in range(10)))
    data = load({"kind": "file", "path": str(path), "params": {"label_column": 0}})
    lines = templates.describe(data)
    assert lines[0] == "10 samples, each a vector 1"
    assert lines[1] == "classification, 2 classes: 3 5, 7 5"
    assert lines[2].startswith("note: t.csv (label column 0): the labels are 3, 7")


def test_list_templates(capsys):
    assert main(["new", "--list-templates"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in out] == ["mlp", "cnn1d", "gru", "lstm", "cnn", "cnn-lstm"]


def test_gatescope_new_from_a_table_with_the_label_first(tmp_path, capsys):
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    table = folder / "data" / "table.tsv"
    rows = [(i % 3, i * 0.1, (i * 7) % 5) for i in range(60)]
    table.write_text("label\ta\tb\n" + "".join(f"{c}\t{a}\t{b}\n" for c, a, b in rows))
    out = folder / "model.gscope"
    assert main(["new", str(out), "--data", str(table), "--label-column", "0", "--template", "gru",
                 "--epochs", "2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["template"] == "gru" and summary["classes"] == {"0": 20, "1": 20, "2": 20}
    assert summary["shape"] == [2] and summary["epochs"] == 2
    saved = json.loads(zipfile.ZipFile(out).read("project.json"))
    assert saved["dataset"] == {"kind": "file", "path": "data/table.tsv", "format": "csv",
                                "params": {"label_column": 0}}
    # The folder moves; the project still finds its data and trains.
    moved = tmp_path / "elsewhere"
    folder.rename(moved)
    assert main(["train", str(moved / "model.gscope"), "--epochs", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["epochs"] == 1


def test_gatescope_new_refuses_clearly(tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_text("1,0\n2,1\n3,0\n")
    (tmp_path / "taken.gscope").write_bytes(b"keep me")
    cases = [(["new", str(tmp_path / "taken.gscope"), "--data", str(table)], "exists already"),
             (["new", str(tmp_path / "a"), "--data", str(tmp_path / "missing.csv")], "does not exist"),
             (["new", str(tmp_path / "a"), "--data", str(table), "--template", "cnn"], "takes images"),
             (["new", str(tmp_path / "a"), "--data", str(table), "--frames", "4"], "takes no --frames"),
             (["new", str(tmp_path / "a"), "--data", str(table), "--resize", "big"], "--resize takes a size")]
    for args, words in cases:
        assert main(args) == 1
        assert words in capsys.readouterr().err
    assert (tmp_path / "taken.gscope").read_bytes() == b"keep me"
    assert main(["new", str(tmp_path / "a")]) == 2


def test_paths_outside_the_project_folder_stay_absolute_and_save_as_rebases(tmp_path):
    data = tmp_path / "shared" / "d.npz"
    data.parent.mkdir()
    np.savez(data, x=np.ones((4, 2)), y=np.arange(4) % 2)
    project = Project(dataset={"kind": "file", "path": str(data)})
    assert portable_reference(project, tmp_path / "p" / "a.gscope")["path"] == str(data)
    assert portable_reference(project, tmp_path / "b.gscope")["path"] == "shared/d.npz"
    project.dataset = portable_reference(project, tmp_path / "b.gscope")
    save_project(project, tmp_path / "b.gscope")
    reopened = load_project(tmp_path / "b.gscope")
    assert dataset_reference(reopened)["path"] == str(tmp_path / "shared" / "d.npz")
    # Saved elsewhere, the relative path is read against the old file first.
    assert portable_reference(reopened, tmp_path / "p" / "c.gscope")["path"] == str(data)
    video = Project(dataset={"kind": "builtin", "name": "video-folder", "params": {"folder": str(tmp_path / "clips")}})
    assert portable_reference(video, tmp_path / "v.gscope")["params"]["folder"] == "clips"
