"""The ``gatescope`` command (DESIGN section 6, a contract).

    gatescope [FILE.gscope] [--view V] [--size WxH]     open the app (a bundled example when no file)
    gatescope --screenshot OUT.png [FILE] [--view V] [--size WxH]
                                                render the main window offscreen to a PNG
    gatescope train PROJECT [--epochs N] [--device D] [--out PATH] [--json]
    gatescope compare PROJECT [--swap BLOCK_ID=TYPE1,TYPE2,... | --vary BLOCK_ID.SETTING=V1,V2,...]
                      [--epochs N] [--device D] [--out DIR] [--json]
    gatescope predict PROJECT (--input X.npy --output Y.npy | --video FILE) [--json]
    gatescope export PROJECT -o MODEL.onnx [--unroll]
    gatescope bench [--device D] [--only GROUP ...] [--quick] [--json]
    gatescope new OUT.gscope --data PATH [--template NAME] [--epochs N] [--batch-size B]
                  [--learning-rate LR] [loader options] [--force] [--json]
    gatescope new --list-templates

``new`` reads the data at PATH (an .npz with arrays x and y; a table .csv, .tsv or .txt with a
label column; a folder with one subfolder of images or of videos per class), prints what it
found (samples, shape, task, classes and their counts, the loader's warnings) and writes a
project whose Input, last Dense and class names fit the data, with training settings that
suit its size (``studio.templates``). The loader options are those of the Data panel:
``--task classification|regression`` and ``--label-column C`` (tables; 0 the first, -1 the
last), ``--resize HxW`` (images of different sizes), ``--grey`` / ``--colour`` (images and
videos), ``--frames T``, ``--stride S`` and ``--size HxW`` (videos). A data path inside the
project's folder is written relative to it. An existing OUT is kept unless ``--force``.
``--list-templates`` prints one line per template: its name, what it is, the data it takes.

Exit codes: 0 success, 2 usage error, 1 failure with one clear line on stderr. With
``--json`` the last line of standard output is one JSON object. Nothing here imports Qt
except the commands that open a window.

What a project file says is checked before the device is chosen or anything is built, so a
damaged or impossible file costs one line and changes nothing; every file a command writes
(the trained project, the predictions, the ONNX model) is written atomically
(``studio.atomic``), and a folder that cannot take the trained project is found before
training starts, not after.
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np

from gatescope.studio import __version__
from gatescope.studio.viewspec import VIEW_KEYS, parse_size

COMMANDS = ("train", "compare", "predict", "export", "bench", "new")


class CommandError(Exception):
    """A failure to report as one line on stderr with exit code 1."""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("gatescope.compute.backend").setLevel(logging.INFO)  # which device, and why, said once
    try:
        if argv and argv[0] in COMMANDS:
            return _run_command(argv)
        return _run_gui(argv)
    except CommandError as exc:
        print(f"gatescope: {exc}", file=sys.stderr)
        return 1
    except MemoryError:
        print("gatescope: out of memory; use a smaller model, batch size or dataset", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("gatescope: interrupted", file=sys.stderr)
        return 1


# ----------------------------------------------------------------------------- GUI
def _run_gui(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="gatescope", description="GateScope: build, train and look inside CNNs and RNNs. "
        f"Commands: {', '.join(COMMANDS)} (gatescope COMMAND --help).")
    parser.add_argument("file", nargs="?", help="a .gscope project to open (default: a bundled example)")
    parser.add_argument("--screenshot", metavar="OUT.png",
                        help="render the main window offscreen, as a person opening FILE gets it, to a PNG and exit")
    parser.add_argument("--view", choices=VIEW_KEYS, help="the view to show (default: the one used last; "
                        "for --screenshot: build)")
    parser.add_argument("--size", metavar="WxH", help="the window's size in pixels (default: 1500x950)")
    parser.add_argument("--version", action="version", version=f"GateScope {__version__}")
    args = parser.parse_args(argv)
    if args.file and not Path(args.file).exists():
        raise CommandError(f"{args.file} does not exist")
    if args.file and args.screenshot:
        _load(args.file)  # offscreen there is no one to read a dialog: a file that cannot open is one line
    size = None
    if args.size:
        try:
            size = parse_size(args.size)
        except ValueError as exc:
            parser.error(str(exc))
    from gatescope.studio.app import run_app  # Qt is imported only here
    return run_app(args.file, screenshot=args.screenshot, view=args.view, size=size)


# ----------------------------------------------------------------------------- commands
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gatescope")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a project headless and save it")
    train.add_argument("project")
    train.add_argument("--epochs", type=int, help="epochs to train (default: the project's epochs setting)")
    train.add_argument("--device", choices=("auto", "cpu", "gpu"), help="where to compute (default: the project's)")
    train.add_argument("--out", help="save the trained project here instead of in place")
    train.add_argument("--json", action="store_true", help="print one JSON object on the last line")

    compare = sub.add_parser("compare", help="train variants of a project in lock-step, on the same batches",
                             description="Train 2 to 6 variants of a project side by side: the same data order, "
                             "the same batch at every step, the same initial weights wherever they can be. With "
                             "neither --swap nor --vary, the comparison saved in the project.")
    compare.add_argument("project")
    what = compare.add_mutually_exclusive_group()
    what.add_argument("--swap", metavar="BLOCK_ID=TYPE1,TYPE2,...",
                      help="swap a block for others of its group, such as b1=SimpleRNN,LSTM,GRU "
                           "(LSTM:peephole and LSTM:coupled for LSTM's variants)")
    what.add_argument("--vary", metavar="BLOCK_ID.SETTING=V1,V2,...",
                      help="give a block setting several values, such as b1.hidden_size=16,64 "
                           "(training.SETTING for a training setting: training.clip_norm=0,1)")
    compare.add_argument("--epochs", type=int, help="epochs each variant trains (default: the project's)")
    compare.add_argument("--device", choices=("auto", "cpu", "gpu"), help="where to compute (default: the project's)")
    compare.add_argument("--out", metavar="DIR", help="write each trained variant as a project into DIR")
    compare.add_argument("--json", action="store_true", help="print one JSON object on the last line")

    predict = sub.add_parser("predict", help="run a trained project on a batch or a video")
    predict.add_argument("project")
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="a .npy batch shaped as the Input block says, batch first")
    source.add_argument("--video", help="a video file to classify window by window")
    predict.add_argument("--output", help="where to write the predictions (.npy), with --input")
    predict.add_argument("--device", choices=("auto", "cpu", "gpu"))
    predict.add_argument("--json", action="store_true")

    export = sub.add_parser("export", help="export a trained project to ONNX")
    export.add_argument("project")
    export.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    export.add_argument("--unroll", action="store_true",
                        help="write recurrent blocks step by step with primitive operators (for converters, "
                             "such as onnx2torch, that lack ONNX's RNN, LSTM and GRU)")
    export.add_argument("--json", action="store_true")

    bench = sub.add_parser("bench", help="measure layer speed against bare GEMMs and PyTorch")
    bench.add_argument("--device", choices=("auto", "cpu", "gpu"))
    bench.add_argument("--only", nargs="+", metavar="GROUP", help="only these groups (conv2d, lstm, gru, rnn, ...)")
    bench.add_argument("--quick", action="store_true", help="fewer repeats")
    bench.add_argument("--json", action="store_true")

    new = sub.add_parser("new", help="make a project from a data file or folder (gatescope new --list-templates)")
    new.add_argument("out", nargs="?", metavar="OUT.gscope", help="the project file to write")
    new.add_argument("--data", metavar="PATH", help="an .npz, a .csv/.tsv/.txt table, or a folder of class "
                     "subfolders of images or videos")
    new.add_argument("--template", help="the model to start from (default: the one for the kind of data)")
    new.add_argument("--list-templates", action="store_true", help="list the templates and exit")
    new.add_argument("--epochs", type=int, help="epochs to train (default: about 1,500 steps, 8 to 40 epochs)")
    new.add_argument("--batch-size", type=int, help="samples per step (default: 16, 32 or 64 by the data's size)")
    new.add_argument("--learning-rate", type=float, help="Adam's step size (default 0.001)")
    new.add_argument("--task", choices=("classification", "regression"), help="npz and tables: what y holds")
    new.add_argument("--label-column", type=int, metavar="C", help="tables: the label column (0 the first, "
                     "-1 the last; default -1)")
    new.add_argument("--resize", metavar="HxW", help="images: resize every image to H x W pixels")
    colour = new.add_mutually_exclusive_group()
    colour.add_argument("--grey", action="store_true", default=None, help="images and videos: one grey channel")
    colour.add_argument("--colour", dest="grey", action="store_false", help="images and videos: three colour "
                        "channels (the default for images; videos default to grey)")
    new.add_argument("--frames", type=int, metavar="T", help="videos: frames per clip (default 8)")
    new.add_argument("--stride", type=int, metavar="S", help="videos: frames between clip starts (default: T)")
    new.add_argument("--size", metavar="HxW", help="videos: frame size (default 16x16)")
    new.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    new.add_argument("--json", action="store_true")
    return parser


def _run_command(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    commands = {"train": cmd_train, "compare": cmd_compare, "predict": cmd_predict, "export": cmd_export,
                "bench": cmd_bench, "new": cmd_new}
    return commands[args.command](args)


def _load(path: str, buildable: bool = False):
    """The project at ``path``; with ``buildable``, CommandError unless its graph can be built."""
    from gatescope.compute.graph import analyse
    from gatescope.studio.project import ProjectError, load_project
    try:
        project = load_project(path)
    except ProjectError as exc:
        raise CommandError(str(exc)) from None
    if buildable:
        problem = analyse(project.graph).first_error()
        if problem:
            raise CommandError(f"{Path(path).name}: the model cannot be built: {problem}")
    return project


def _build(project, label: str, xp=np):
    """The project's model with its weights; CommandError when it cannot be built or does not fit."""
    from gatescope.compute.graph import GraphError
    try:
        return project.build_model(xp=xp)
    except (GraphError, ValueError) as exc:
        raise CommandError(f"{label}: {exc}") from None
    except MemoryError:
        from gatescope.compute.graph import analyse, weights_text
        raise CommandError(f"{label}: not enough memory to build the model, of "
                           f"{weights_text(analyse(project.graph).total_params)}; make it smaller") from None


def _dataset(project, label: str):
    """The project's dataset; CommandError naming ``label`` when it cannot be read or held."""
    from gatescope.compute.datasets import DataError
    from gatescope.studio.session import load_dataset
    try:
        return load_dataset(project)
    except DataError as exc:
        raise CommandError(f"{label}: {exc}") from None
    except MemoryError:
        raise CommandError(f"{label}: not enough memory for the dataset; ask for a smaller one") from None


def _device(requested: str | None):
    from gatescope.compute.backend import DeviceError, select_device
    try:
        return select_device(requested)
    except DeviceError as exc:
        raise CommandError(str(exc)) from None


def _emit_json(obj: dict) -> None:
    print(json.dumps(_json_safe(obj)))


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def cmd_train(args) -> int:
    from gatescope.compute.datasets import DataError
    from gatescope.compute.train import WHOLE_RANGES, Trainer
    from gatescope.studio.atomic import check_writable
    from gatescope.studio.project import ProjectError, save_project
    from gatescope.studio.runs import new_run
    from gatescope.studio.session import portable_reference

    label = Path(args.project).name
    project = _load(args.project, buildable=True)
    epochs = project.training.epochs if args.epochs is None else args.epochs
    if not 0 <= epochs <= WHOLE_RANGES["epochs"][1]:
        raise CommandError(f"--epochs must be from 0 to {WHOLE_RANGES['epochs'][1]:,}")
    out = Path(args.out) if args.out else Path(args.project)
    try:
        check_writable(out)
    except OSError as exc:
        raise CommandError(f"cannot save to {out}: {exc.strerror or exc}; nothing was trained") from None
    dataset = _dataset(project, label)  # host arrays: read before the device is chosen and said
    device = _device(args.device or project.training.device)
    model = _build(project, label, device.xp)
    try:
        trainer = Trainer(model, dataset, project.training, project.train_state(), device.name)
    except (DataError, ValueError) as exc:
        raise CommandError(f"{label}: {exc}") from None
    except MemoryError:
        raise CommandError(f"{label}: not enough memory for the dataset and the model; use a smaller "
                           "dataset or model") from None
    started = time.perf_counter()
    failure, ended = None, "finished"
    first_epoch = trainer.state.epochs_done
    try:
        for event in trainer.run(epochs):
            if event.kind == "start" and not args.json:
                print(f"training {project.name} on the {device.description}: {event.data['train']} training and "
                      f"{event.data['val']} validation samples, {event.data['steps_per_epoch']} steps per epoch")
            elif event.kind == "epoch":
                d = event.data
                line = f"epoch {d['epoch']:>3}  loss {d['train_loss']:.4f}"
                if d["train_accuracy"] is not None:
                    line += f"  acc {d['train_accuracy']:.3f}"
                if d["val_loss"] is not None:
                    line += f"  val_loss {d['val_loss']:.4f}"
                if d["val_accuracy"] is not None:
                    line += f"  val_acc {d['val_accuracy']:.3f}"
                print(line + f"  ({d['seconds']:.1f} s)", file=sys.stderr if args.json else sys.stdout, flush=True)
            elif event.kind in ("failed", "stopped"):
                failure, ended = event.data["message"], event.kind
            elif event.kind == "finished" and event.data.get("early_stopped"):
                print(event.data["message"], file=sys.stderr if args.json else sys.stdout)
    except MemoryError:
        failure, ended = "out of memory; use a smaller batch size or model.", "failed"
    seconds = time.perf_counter() - started
    try:
        test = trainer.test_metrics()
    except MemoryError:
        test = None
    weights = model.state_dict()
    project.take_train_state(trainer.state, weights)
    project.dataset = portable_reference(project, out)
    project.runs.append(new_run(
        project.runs, kind="train", label="", ended=ended, graph=project.graph, training=project.training,
        state=trainer.state, first_epoch=first_epoch, seconds=seconds, parameters=model.analysis.total_params,
        test=None if test is None or not trainer.test_size else {"loss": float(test.loss), "accuracy": test.accuracy,
                                                                 "samples": trainer.test_size},
        weights=weights if project.keep_run_weights else None))
    try:
        save_project(project, out)
    except ProjectError as exc:
        raise CommandError(str(exc)) from None
    if failure:
        raise CommandError(f"training stopped: {failure} The project was saved to {out}.")
    result = {"project": str(out), "epochs": trainer.state.epochs_done, "epochs_run": epochs,
              "seconds": round(seconds, 3), "device": device.name, "task": model.task,
              "test_loss": test.loss}
    if model.task == "classification":
        result["test_accuracy"] = test.accuracy
    whole_answers = trainer.test_sequence_accuracy()
    if whole_answers is not None:
        result["test_sequence_accuracy"] = whole_answers
    if trainer.state.history:
        result["final"] = trainer.state.history[-1]
    if args.json:
        _emit_json(result)
    else:
        if trainer.test_size == 0:
            score = "no test samples (test_fraction is 0)"
        elif model.task == "classification":
            score = f"test accuracy {test.accuracy:.4f}"
            if whole_answers is not None:
                score += f" per character, {whole_answers:.4f} of whole answers (fed back, no teacher forcing)"
        else:
            score = f"test MSE {test.loss:.5f}"
        print(f"{score}, {epochs} epochs in {seconds:.1f} s on the {device.name}; saved {out}")
    return 0


def cmd_compare(args) -> int:
    from gatescope.compute.train import WHOLE_RANGES, Control
    from gatescope.studio.atomic import check_writable
    from gatescope.studio.compare import CompareJob, compare_events, slug, variant_project, variants_for
    from gatescope.studio.compare_choice import ChoiceError, parse_swap, parse_vary
    from gatescope.studio.project import ProjectError, save_project
    from gatescope.studio.session import dataset_reference, portable_reference

    name = Path(args.project).name
    project = _load(args.project, buildable=True)
    if args.epochs is not None and not 0 <= args.epochs <= WHOLE_RANGES["epochs"][1]:
        raise CommandError(f"--epochs must be from 0 to {WHOLE_RANGES['epochs'][1]:,}")
    try:
        if args.swap:
            choice = parse_swap(args.swap)
        elif args.vary:
            choice = parse_vary(args.vary)
        elif project.compare is not None:
            choice = project.compare
        else:
            raise CommandError(f"{name} saves no comparison: give --swap BLOCK_ID=TYPE1,TYPE2,... or "
                               "--vary BLOCK_ID.SETTING=V1,V2,...")
        variants = variants_for(project.graph, project.training, choice)
    except ChoiceError as exc:
        raise CommandError(f"{name}: {exc}") from None
    folder = Path(args.out) if args.out else None
    if folder is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            check_writable(folder / f"{slug(variants[0].label)}.gscope")
        except OSError as exc:
            raise CommandError(f"cannot write the variants to {folder}: {exc.strerror or exc}; nothing was "
                               "trained") from None
    dataset = _dataset(project, name)  # host arrays: read before the device is chosen and said
    device = _device(args.device or project.training.device)
    epochs = args.epochs if args.epochs is not None else choice.epochs
    job = CompareJob(variants, dataset_reference(project), epochs, dataset, device.name)
    labels = [v.label for v in variants]
    say = sys.stderr if args.json else sys.stdout
    width = max(len(label) for label in labels)
    end = {"kind": "failed", "message": "the comparison did not run", "results": None}
    same_batches = False
    for kind, data in compare_events(job, Control(), min_interval_s=float("inf"), pause_s=0.0):
        if kind == "started":
            same_batches = data["same_batches"]
            batches = ("the same batches at every step" if same_batches else
                       "NOT the same batches: the variants differ in batch size, split or seed")
            print(f"comparing {', '.join(labels)} ({choice.describe()}) on the {data['device_description']}; "
                  f"{batches}", file=say, flush=True)
        elif kind == "epoch":
            d = data["record"]
            line = f"{labels[data['variant']]:<{width}}  epoch {d['epoch']:>3}  loss {d['train_loss']:.4f}"
            if d.get("val_loss") is not None:
                line += f"  val_loss {d['val_loss']:.4f}"
            if d.get("val_accuracy") is not None:
                line += f"  val_acc {d['val_accuracy']:.3f}"
            print(line, file=say, flush=True)
        elif kind == "variant_ended" and data["kind"] == "failed":
            print(f"{labels[data['variant']]}: {data['message']}", file=say, flush=True)
        elif kind == "ended":
            end = data
    results = end["results"]
    if results is None or end["kind"] == "failed":
        raise CommandError(f"{name}: {end['message']}")
    written: dict[str, str] = {}
    if folder is not None:
        try:
            for result in results:
                target = folder / f"{slug(result.label)}.gscope"
                variant = variant_project(project, result, labels)
                variant.dataset = portable_reference(variant, target)
                written[result.label] = str(save_project(variant, target))
        except (OSError, ProjectError) as exc:
            raise CommandError(f"cannot write the variants to {folder}: {exc}") from None
    runs = [{"label": r.label, "test_loss": None if r.test is None else r.test["loss"],
             "test_accuracy": None if r.test is None else r.test["accuracy"], "seconds": round(r.seconds, 3),
             "parameters": r.parameters, "seconds_per_step": r.seconds_per_step, "epochs": r.state.epochs_done,
             "ended": r.ended, "project": written.get(r.label)} for r in results]
    if args.json:
        _emit_json({"same_batches": same_batches, "device": device.name, "runs": runs})
        return 0
    classify = results[0].test is not None and results[0].test.get("accuracy") is not None
    print(f"{'variant':<{width}}  {'parameters':>10}  {'ms/step':>8}  {'test acc' if classify else 'test MSE':>9}"
          f"  {'seconds':>8}  ended")
    for run in runs:
        score = run["test_accuracy"] if classify else run["test_loss"]
        score_text = "-" if score is None else (f"{score:.1%}" if classify else f"{score:.4g}")
        per_step = "-" if run["seconds_per_step"] is None else f"{run['seconds_per_step'] * 1e3:.2f}"
        print(f"{run['label']:<{width}}  {run['parameters']:>10,}  {per_step:>8}  {score_text:>9}  "
              f"{run['seconds']:>8.1f}  {run['ended']}" + (f"  -> {run['project']}" if run["project"] else ""))
    return 0


def cmd_predict(args) -> int:
    label = Path(args.project).name
    project = _load(args.project, buildable=True)
    if not project.trained:
        raise CommandError(f"{label} has no trained weights; train it first: "
                           f"gatescope train {args.project}")
    if args.input and not args.output:
        raise CommandError("--input needs --output Y.npy")
    x = _read_input(args.input) if args.input else None
    device = _device(args.device or project.training.device)
    model = _build(project, label, device.xp)
    if args.video:
        from gatescope.studio.video_predict import predict_video
        return predict_video(project, model, args.video, as_json=args.json)
    want = tuple(model.input_shape)
    if x.ndim == len(want):
        x = x[None]
    if tuple(x.shape[1:]) != want:
        raise CommandError(f"{args.input} holds an array of shape {x.shape} ({x.dtype}); the model takes "
                           f"numbers shaped (N,) + {want}")
    try:
        with np.errstate(all="ignore"):  # an overflow shows up as a non-finite output, refused below
            y = model.predict(x)
    except MemoryError:
        raise CommandError(f"not enough memory to predict {len(x):,} samples; give fewer at a time") from None
    bad = ~np.isfinite(y.reshape(len(y), -1)).all(axis=1)
    if bad.any():
        raise CommandError(f"the model's output for sample {int(np.argmax(bad))} is NaN or infinite (its inputs "
                           f"may be far outside what it was trained on); nothing was written")
    output = args.output if args.output.endswith(".npy") else args.output + ".npy"  # as np.save names it
    _write(output, _npy_bytes(y))
    summary = {"output": output, "samples": int(len(x)), "shape": list(y.shape), "task": model.task}
    if model.task == "classification":
        summary["predicted"] = y.argmax(axis=-1).tolist()
    if args.json:
        _emit_json(summary)
    else:
        print(f"wrote {output}: {y.shape} {'class probabilities' if model.task == 'classification' else 'values'}")
    return 0


def _read_input(path: str) -> np.ndarray:
    """The ``--input`` batch: a regular .npy file of real numbers, its header checked against its
    size before anything is allocated, every value finite in float32."""
    from gatescope.compute.datasets import DataError
    from gatescope.compute.datasets.checks import MAX_FILE_BYTES, read_npy, regular_file
    try:
        regular_file(path, "the input", MAX_FILE_BYTES)
        with open(path, "rb") as stream:
            x = read_npy(stream, Path(path).stat().st_size, path)
    except DataError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"{path} cannot be read: {exc.strerror or exc}") from None
    if x.dtype.kind not in "biuf":
        what = "complex numbers (their imaginary parts would be lost)" if x.dtype.kind == "c" else f"{x.dtype} values"
        raise CommandError(f"{path} holds {what}; the model takes real numbers")
    if x.ndim == 0:
        raise CommandError(f"{path} holds a single number; the model takes a batch of samples")
    if not np.isfinite(x).all():
        raise CommandError(f"{path} holds NaN or Inf values")
    with np.errstate(over="ignore"):
        x32 = x.astype(np.float32)
    if not np.isfinite(x32).all():
        raise CommandError(f"{path} holds values beyond float32's range (about +-3.4e38), which the model "
                           "computes in; scale them down")
    return x32


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _write(path: str, payload: bytes) -> None:
    from gatescope.studio.atomic import write_atomically
    try:
        write_atomically(path, payload)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None


def cmd_export(args) -> int:
    project = _load(args.project)
    from gatescope.studio.export_onnx import ExportError, export_project
    try:
        info = export_project(project, args.output, unroll_recurrent=args.unroll)
    except ExportError as exc:
        raise CommandError(str(exc)) from None
    if args.json:
        _emit_json(info)
    else:
        print(f"wrote {args.output}")
    return 0


def cmd_bench(args) -> int:
    from gatescope.compute import bench
    device = _device(args.device)
    groups = bench.groups()
    if args.only:
        unknown = sorted(set(args.only) - set(groups))
        if unknown:
            raise CommandError(f"no benchmark group {', '.join(unknown)}; choose from {', '.join(groups)}")
    if not args.json:
        print(f"GateScope bench on the {device.description}; medians, float32")
        print(f"{'group':<8} {'case':<44} {'ours ms':>9} {'GEMM ms':>9} {'ours/GEMM':>9} {'torch ms':>9} "
              f"{'torch/ours':>10}  algorithm")

    def show(row):
        if args.json:
            return
        fmt = lambda v, scale=1e3: "-" if v is None else f"{v * scale:9.3f}"  # noqa: E731
        ratio = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        print(f"{row.group:<8} {row.name:<44} {fmt(row.ours_s)} {fmt(row.gemm_s)} {ratio(row.vs_gemm):>9} "
              f"{fmt(row.torch_s)} {ratio(row.torch_speedup):>10}  {row.extra.get('algorithm', '')}".rstrip(),
              flush=True)

    rows = bench.run(device, args.only, args.quick, show)
    means = bench.summaries(rows)
    summary = {"device": device.name, "rows": [r.to_dict() for r in rows], **means["all"],
               "groups": {name: values for name, values in means.items() if name != "all"}}
    if args.json:
        _emit_json(summary)
        return 0
    for name, values in means.items():
        g, t = values["geomean_vs_gemm"], values["geomean_torch_over_ours"]
        print(f"geometric mean, {'all rows' if name == 'all' else name + ':':<12} ours/GEMM "
              f"{'-' if g is None else f'{g:.2f}'}; PyTorch time / ours "
              f"{'- (PyTorch not importable)' if t is None else f'{t:.2f}'}")
    return 0


def _pixels(text: str | None, option: str):
    """``'16'`` -> 16, ``'24x32'`` -> ``[24, 32]``; CommandError for anything else."""
    if text is None:
        return None
    parts = text.lower().replace("×", "x").split("x")
    if not all(p.strip().isdigit() and int(p) > 0 for p in parts) or len(parts) > 2:
        raise CommandError(f"{option} takes a size in pixels, such as 16 or 24x32, not {text!r}")
    sizes = [int(p) for p in parts]
    return sizes[0] if len(sizes) == 1 and option == "--size" else sizes * (3 - len(sizes))


def cmd_new(args) -> int:
    from gatescope.compute.datasets import DataError, load
    from gatescope.studio import templates
    from gatescope.studio.project import SUFFIX, ProjectError, save_project
    from gatescope.studio.session import file_reference, portable_reference

    if args.list_templates:
        print("\n".join(templates.list_templates()))
        return 0
    if not args.out or not args.data:
        print("gatescope new: give the project to write and --data PATH (or --list-templates)", file=sys.stderr)
        return 2
    out = Path(args.out)
    if out.suffix != SUFFIX:
        out = out.with_name(out.name + SUFFIX)
    if out.exists() and not args.force:
        raise CommandError(f"{out} exists already; choose another name, or pass --force to replace it")
    options = {"task": args.task, "label_column": args.label_column, "resize": _pixels(args.resize, "--resize"),
               "grey": args.grey, "frames": args.frames, "stride": args.stride, "size": _pixels(args.size, "--size")}
    try:
        ref = file_reference(args.data, options)
        from gatescope.compute.datasets.files import LOADER_OPTIONS
        unused = sorted(k for k in ref["params"] if k not in LOADER_OPTIONS[ref["format"]] and k != "task")
        if unused:
            raise CommandError(f"{Path(args.data).name} is {ref['format']} data, which takes no "
                               f"{', '.join('--' + k.replace('_', '-') for k in unused)}")
        dataset = load(ref)
        project = templates.new_project(dataset, ref, args.template, name=out.stem, epochs=args.epochs,
                                        batch_size=args.batch_size, learning_rate=args.learning_rate)
    except (DataError, templates.TemplateError) as exc:
        raise CommandError(str(exc)) from None
    project.dataset = portable_reference(project, out)
    found = templates.describe(dataset)
    try:
        project.training.check()
        save_project(project, out)
    except (ProjectError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    from gatescope.compute.graph import analyse
    analysis = analyse(project.graph)
    template = templates.choose(dataset, args.template).name
    t = project.training
    if args.json:
        _emit_json({"project": str(out), "template": template, "found": found, "samples": len(dataset.x),
                    "shape": list(dataset.sample_shape), "task": dataset.task,
                    "classes": dict(zip(dataset.class_names, dataset.class_counts().tolist()))
                    if dataset.task == "classification" else None,
                    "parameters": analysis.total_params, "epochs": t.epochs, "batch_size": t.batch_size,
                    "learning_rate": t.learning_rate, "dataset": project.dataset})
        return 0
    print(f"found in {Path(args.data).name}:")
    for line in found:
        print(f"  {line}")
    print(f"wrote {out}: the {template} template, {len(project.graph.blocks)} blocks, {analysis.total_params:,} "
          f"parameters; {t.epochs} epochs of batches of {t.batch_size}, learning rate {t.learning_rate:g}")
    print(f"train it: gatescope train {out}")
    return 0


if __name__ == "__main__":
    # Run through the imported module, so `python -m studio.cli` raises and catches the same
    # CommandError class as the commands it imports (not a second copy under __main__).
    from gatescope.studio.cli import main as _main
    sys.exit(_main())
