"""Comparisons without the window: what a block can be swapped for, the variants a choice makes
(and the one clear error when it cannot), the lock-step events, a variant as its own project,
and ``gatescope compare`` (its JSON contract, --out, its errors)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from gatescope.compute.graph import GraphSpec
from gatescope.compute.train import Control, TrainSettings
from gatescope.studio.cli import main
from gatescope.studio.compare import (CompareJob, compare_events, swap_options, swapped_block, variant_project,
                                      variants_for)
from gatescope.studio.compare_choice import ChoiceError, CompareChoice, parse_swap, parse_vary
from gatescope.studio.project import Project, load_project, save_project

ROWS = {"kind": "builtin", "name": "digits", "params": {"layout": "rows"}}
RECURRENT = ["SimpleRNN", "LSTM", "LSTM:peephole", "LSTM:coupled", "GRU"]


def graph(block_type="LSTM", **settings):
    return GraphSpec.chain(("Input", {"shape": [8, 8]}), (block_type, {"hidden_size": 8, **settings}),
                           ("Dense", {"units": 10}), ("Classify", {}))


TRAINING = TrainSettings(epochs=1, batch_size=16, steps_per_epoch=4, learning_rate=5e-3)


def test_a_recurrent_block_can_be_swapped_for_its_family():
    assert swap_options(graph(), "b1") == RECURRENT
    assert swap_options(graph("GRU"), "b1") == RECURRENT
    # an image sequence's ConvLSTM2D is of the same group but does not fit a sequence of vectors
    assert "ConvLSTM2D" not in swap_options(graph(), "b1")


def test_a_swap_keeps_the_shared_settings_and_drops_the_others():
    block = graph("LSTM", return_sequences=False, truncate_bptt=3, pin_forget="1").block("b1")
    gru = swapped_block(block, "GRU")
    assert gru.type == "GRU" and gru.settings == {"hidden_size": 8, "return_sequences": False, "truncate_bptt": 3}
    coupled = swapped_block(block, "LSTM:coupled")
    assert coupled.settings["variant"] == "coupled" and coupled.settings["pin_forget"] == "1"
    assert swapped_block(graph(variant="peephole").block("b1"), "LSTM").settings.get("variant") is None


def test_variants_of_a_swap_and_of_a_setting():
    swaps = variants_for(graph(), TRAINING, parse_swap("b1=SimpleRNN,LSTM,GRU,LSTM:peephole"))
    assert [v.label for v in swaps] == ["SimpleRNN", "LSTM", "GRU", "peephole LSTM"]
    assert [v.graph.block("b1").type for v in swaps] == ["SimpleRNN", "LSTM", "GRU", "LSTM"]
    sizes = variants_for(graph(), TRAINING, parse_vary("b1.hidden_size=4,16"))
    assert [v.graph.block("b1").settings["hidden_size"] for v in sizes] == [4, 16]
    clips = variants_for(graph(), TRAINING, parse_vary("training.clip_norm=0,1"))
    assert [v.settings.clip_norm for v in clips] == [0.0, 1.0] and clips[0].label == "clip_norm 0"
    flags = variants_for(graph(), TRAINING, CompareChoice("vary", "b1", (True, "off"), setting="bidirectional"))
    assert [v.graph.block("b1").settings["bidirectional"] for v in flags] == [True, False]
    twice = variants_for(graph(), TRAINING, parse_swap("b1=LSTM,LSTM"))
    assert [v.label for v in twice] == ["LSTM", "LSTM (2)"]


@pytest.mark.parametrize("choice, words", [
    (parse_swap("b1=Dense,GRU"), "Dense cannot replace LSTM b1: it can be swapped for SimpleRNN, "
                                 "LSTM, LSTM:peephole, LSTM:coupled or GRU"),
    (parse_swap("b1=GRU,LSTM:sideways"), "sideways LSTM cannot replace LSTM b1"),
    (parse_swap("b7=GRU,LSTM"), "the model has no block b7; its blocks are b0 (Input), b1 (LSTM)"),
    (parse_vary("b1.colour=1,2"), "LSTM b1 has no setting colour; its settings are hidden_size"),
    (parse_vary("training.speed=1,2"), "there is no training setting speed"),
    (parse_vary("b1.hidden_size=8,lots"), "b1.hidden_size=lots: 'lots' is not a whole number"),
    (parse_vary("b1.hidden_size=8,0"), "b1.hidden_size=0: Hidden size must be at least 1"),
    (parse_vary("training.learning_rate=0.1,-1"), "learning_rate must be above 0"),
])
def test_a_choice_that_cannot_be_made_is_one_clear_error(choice, words):
    with pytest.raises(ChoiceError) as caught:
        variants_for(graph(), TRAINING, choice)
    assert words in str(caught.value)


@pytest.mark.parametrize("text, parse, words", [
    ("b1=LSTM", parse_swap, "2 to 6 types, not 1"),
    ("b1=" + ",".join(["GRU"] * 7), parse_swap, "2 to 6 types, not 7"),
    ("LSTM,GRU", parse_swap, "--swap takes BLOCK_ID=TYPE1,TYPE2"),
    ("b1=4,8", parse_vary, "--vary takes BLOCK_ID.SETTING=V1,V2"),
])
def test_the_command_line_spellings_are_checked(text, parse, words):
    with pytest.raises(ChoiceError, match=words):
        parse(text)


def collect(job, **kw):
    return list(compare_events(job, Control(), min_interval_s=kw.get("interval", 0.0), pause_s=0.0))


def test_the_events_carry_every_step_of_every_variant_and_end_with_the_results():
    variants = variants_for(graph(), TRAINING, parse_swap("b1=LSTM,GRU"))
    events = collect(CompareJob(variants, ROWS, epochs=2), interval=10.0)
    kinds = [k for k, _ in events]
    assert kinds[0] == "started" and kinds[-1] == "ended"
    started = events[0][1]
    assert started["same_batches"] and started["task"] == "classification"
    assert [v["label"] for v in started["variants"]] == ["LSTM", "GRU"]
    assert started["variants"][1]["shared"] == ["b2/W", "b2/b"]
    steps = {0: [], 1: []}
    for kind, data in events:
        if kind == "steps":
            for i, payload in data["variants"].items():
                steps[i] += list(payload["global_steps"])
                assert np.all((payload["accuracies"] >= 0) & (payload["accuracies"] <= 1))
    assert steps == {0: list(range(8)), 1: list(range(8))}
    probes = [d for k, d in events if k == "probe"]
    assert [(d["variant"], d["epoch"]) for d in probes] == [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (1, 2)]
    lstm = probes[0]["blocks"]["b1"]
    assert lstm["grad_hidden"].shape == (8,) and lstm["grad_cell"].shape == (8,) and "forget" in lstm["health"]
    assert probes[1]["blocks"]["b1"]["grad_cell"] is None                      # a GRU has no cell state
    ended = events[-1][1]
    assert ended["kind"] == "finished"
    results = ended["results"]
    assert [r.steps for r in results] == [8, 8] and all(r.seconds_per_step > 0 for r in results)
    assert results[0].state.step_losses != results[1].state.step_losses
    assert results[0].test["samples"] > 0 and results[0].parameters > results[1].parameters


def test_a_comparison_that_cannot_start_says_why():
    variants = variants_for(graph(), TRAINING, parse_swap("b1=LSTM,GRU"))
    (kind, data), = collect(CompareJob(variants, {"kind": "builtin", "name": "nothing-of-that-name"}))
    assert kind == "ended" and data["kind"] == "failed" and data["results"] is None and data["message"]


def test_a_variant_becomes_a_project_with_its_weights_and_its_run(tmp_path):
    base = Project(name="base", graph=graph(), training=TRAINING, dataset=ROWS, description="The base.")
    variants = variants_for(base.graph, base.training, parse_swap("b1=LSTM,GRU"))
    results = collect(CompareJob(variants, ROWS))[-1][1]["results"]
    project = variant_project(base, results[1], [v.label for v in variants])
    assert project.name == "base-gru" and "trained in lock-step with LSTM" in project.description
    read = load_project(save_project(project, tmp_path / "gru.gscope"))
    assert read.graph.block("b1").type == "GRU" and read.trainer["epochs_done"] == 1
    for name, value in results[1].weights.items():
        np.testing.assert_array_equal(read.weights[name], value)
    (run,) = read.runs
    assert (run.kind, run.label, run.ended) == ("compare", "GRU", "finished") and run.weights
    np.testing.assert_array_equal(run.step_losses, np.asarray(results[1].state.step_losses, np.float32))


def test_a_file_dataset_keeps_working_from_where_a_variant_is_written(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    np.savez(data / "seq.npz", x=rng.random((40, 8, 8)).astype(np.float32), y=rng.integers(0, 10, 40))
    base = Project(name="base", graph=graph(), training=TRAINING, dataset={"kind": "file", "path": "data/seq.npz"})
    save_project(base, tmp_path / "base.gscope")
    results = collect(CompareJob(variants_for(base.graph, base.training, parse_swap("b1=LSTM,GRU")),
                                 {"kind": "file", "path": str(data / "seq.npz")}))[-1][1]["results"]
    project = variant_project(load_project(tmp_path / "base.gscope"), results[0])
    assert project.dataset["path"] == str(data / "seq.npz")


# ----------------------------------------------------------------------------- the command line
@pytest.fixture
def small(tmp_path):
    project = Project(name="small", graph=graph(), training=TRAINING, dataset=ROWS)
    return save_project(project, tmp_path / "small.gscope")


def last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_compare_prints_the_contract_json_and_writes_the_variants(small, tmp_path, capsys):
    out = tmp_path / "variants"
    assert main(["compare", str(small), "--swap", "b1=LSTM,GRU,SimpleRNN", "--epochs", "2", "--out", str(out),
                 "--json"]) == 0
    result = last_json(capsys)
    assert result["same_batches"] is True
    assert [r["label"] for r in result["runs"]] == ["LSTM", "GRU", "SimpleRNN"]
    for run in result["runs"]:
        assert set(run) >= {"label", "test_loss", "test_accuracy", "seconds", "parameters"}
        assert 0 <= run["test_accuracy"] <= 1 and run["seconds"] > 0 and run["epochs"] == 2
        written = load_project(run["project"])
        assert written.trained and written.graph.block("b1").type == run["label"]
    assert load_project(small).runs == []        # the project compared is left as it was


def test_compare_uses_the_saved_comparison(small, capsys):
    project = load_project(small)
    project.compare = CompareChoice("vary", "training", (0.0, 1.0), setting="clip_norm", epochs=1)
    save_project(project, small)
    assert main(["compare", str(small), "--json"]) == 0
    assert [r["label"] for r in last_json(capsys)["runs"]] == ["clip_norm 0", "clip_norm 1"]


def test_different_batches_are_said(small, capsys):
    assert main(["compare", str(small), "--vary", "training.batch_size=8,16", "--json"]) == 0
    assert last_json(capsys)["same_batches"] is False


@pytest.mark.parametrize("args, words", [
    (["--swap", "b1=Dense,GRU"], "Dense cannot replace LSTM b1: it can be swapped for SimpleRNN"),
    ([], "saves no comparison: give --swap"),
    (["--vary", "b1.hidden_size=8,x"], "'x' is not a whole number"),
])
def test_compare_errors_are_one_line_with_exit_1(small, capsys, args, words):
    assert main(["compare", str(small), *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gatescope: small.gscope") and words in err[0]


def test_swap_and_vary_together_is_a_usage_error(small):
    with pytest.raises(SystemExit) as caught:
        main(["compare", str(small), "--swap", "b1=LSTM,GRU", "--vary", "b1.hidden_size=4,8"])
    assert caught.value.code == 2


def test_comparisons_and_the_run_history_need_no_qt():
    """``gatescope compare`` runs on a server with no display: nothing it imports imports Qt."""
    code = ("import sys\n"
            "from gatescope.studio import cli, compare, compare_choice, runs, project\n"
            "import gatescope.compute.lockstep\n"
            "assert not [m for m in sys.modules if m.startswith('PySide6')], 'Qt was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
