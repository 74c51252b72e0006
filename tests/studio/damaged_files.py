"""Issue 18's audit as a table: every kind of damaged, hostile or impossible project file,
generated here from a real trained project (no binary is shipped), with the words the refusal
must say and the runs that must refuse it.

A case is ``Case(build, message, refused_by)``: ``build(folder)`` returns the file's bytes
(and may put data files in ``folder``), ``message`` a regex the one line must match, and
``refused_by`` the runs that must fail with it: ``open`` (opening refuses it, so every command
and the window do), or some of ``train``, ``predict``, ``export`` (the file opens; that command
refuses what it asks).
"""
from __future__ import annotations

import functools
import io
import json
import os
import struct
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from gatescope.compute.datasets import load
from gatescope.compute.graph import GraphSpec
from gatescope.compute.train import Trainer, TrainSettings
from gatescope.studio import project as project_module
from gatescope.studio.project import Project

OPEN = ("open",)


@dataclass(frozen=True)
class Case:
    build: Callable[[Path], bytes]
    message: str
    refused_by: tuple[str, ...] = OPEN


@functools.lru_cache(maxsize=1)
def trained_members() -> tuple[tuple[str, bytes], ...]:
    """The members of a small project trained for one epoch on the digits as vectors."""
    graph = GraphSpec.chain(("Input", {"shape": [64]}), ("Dense", {"units": 12}), ("Tanh", {}),
                            ("Dense", {"units": 10}), ("Classify", {}))
    project = Project(name="tiny", graph=graph, positions={f"b{i}": (i * 160.0, 40.0) for i in range(5)},
                      training=TrainSettings(epochs=1, batch_size=64, learning_rate=0.01),
                      dataset={"kind": "builtin", "name": "digits", "params": {"layout": "vector"}})
    model = project.build_model()
    trainer = Trainer(model, load(project.dataset), project.training)
    for _ in trainer.run(1):
        pass
    project.take_train_state(trainer.state, model.state_dict())
    with zipfile.ZipFile(io.BytesIO(project_module._pack(project))) as z:
        return tuple((name, z.read(name)) for name in z.namelist())


def members() -> dict[str, bytes]:
    return dict(trained_members())


def meta() -> dict:
    return json.loads(members()["project.json"])


def zip_of(items, method=zipfile.ZIP_DEFLATED) -> bytes:
    """A zip of ``items`` (a dict, or pairs when a name repeats); JSON values are dumped."""
    buffer = io.BytesIO()
    pairs = items.items() if isinstance(items, dict) else items
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names made on purpose
        with zipfile.ZipFile(buffer, "w", method) as z:
            for name, data in pairs:
                z.writestr(name, data if isinstance(data, (bytes, str)) else json.dumps(data))
    return buffer.getvalue()


def with_meta(**changes) -> Callable[[Path], bytes]:
    """A builder: the trained project with ``project.json`` keys replaced (``None`` deletes)."""
    def build(folder: Path) -> bytes:
        m = meta()
        for key, value in changes.items():
            if value is None:
                m.pop(key, None)
            else:
                m[key] = value(folder) if callable(value) else value
        return zip_of({**members(), "project.json": json.dumps(m)})
    return build


def with_json_text(edit: Callable[[str], str]) -> Callable[[Path], bytes]:
    """A builder: ``project.json``'s text passed through ``edit`` (for what json.dumps cannot write)."""
    def build(folder: Path) -> bytes:
        return zip_of({**members(), "project.json": edit(json.dumps(meta()))})
    return build


def with_members(**changes) -> Callable[[Path], bytes]:
    """A builder: members replaced (``weights=...`` is ``weights.npz``; ``None`` drops one)."""
    def build(folder: Path) -> bytes:
        m = members()
        for key, value in changes.items():
            name = key.replace("_", ".") if "." not in key else key
            name = {"weights": "weights.npz", "optimizer": "optimizer.npz", "steps": "steps.npz",
                    "history": "history.json", "project": "project.json"}.get(key, name)
            if value is None:
                m.pop(name, None)
            else:
                m[name] = value
        return zip_of(m)
    return build


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{k.replace("__", "/"): v for k, v in arrays.items()})
    return buffer.getvalue()


def trained_arrays(member: str) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(io.BytesIO(members()[member])) as z:
        return {n[:-4]: np.load(z.open(n), allow_pickle=False) for n in z.namelist()}


def optimizer_with(**changes) -> bytes:
    arrays = trained_arrays("optimizer.npz")
    arrays.update({k.replace("__", "/"): v for k, v in changes.items()})
    return npz(**{k.replace("/", "__"): v for k, v in arrays.items()})


def patch_headers(data: bytes, member: str, *, flag: int | None = None, method: int | None = None,
                  declared: int | None = None) -> bytes:
    """``data`` with ``member``'s local and central headers patched: general-purpose flag bits
    OR-ed with ``flag``, the compression method set to ``method``, the declared (uncompressed)
    size set to ``declared``."""
    out = bytearray(data)
    encoded = member.encode()
    for signature, flag_at, method_at, size_at, name_at in ((b"PK\x03\x04", 6, 8, 22, 30),
                                                            (b"PK\x01\x02", 8, 10, 24, 46)):
        start = 0
        while (start := out.find(signature, start)) >= 0:
            if out[start + name_at:start + name_at + len(encoded)] == encoded:
                if flag is not None:
                    old = struct.unpack_from("<H", out, start + flag_at)[0]
                    struct.pack_into("<H", out, start + flag_at, old | flag)
                if method is not None:
                    struct.pack_into("<H", out, start + method_at, method)
                if declared is not None:
                    struct.pack_into("<I", out, start + size_at, declared)
            start += 4
    return bytes(out)


def nested(depth: int):
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def training_with(**changes) -> Callable[[Path], bytes]:
    return with_meta(training=lambda folder: {**meta()["training"], **changes})


def dataset(ref) -> Callable[[Path], bytes]:
    return with_meta(dataset=ref)


def graph_with_input(shape, units: int = 12) -> Callable[[Path], bytes]:
    """A builder: the graph's Input shape and first Dense changed, its weights dropped (untrained)."""
    def build(folder: Path) -> bytes:
        m = meta()
        m["graph"]["blocks"][0]["settings"]["shape"] = shape
        m["graph"]["blocks"][1]["settings"]["units"] = units
        m["trainer"] = {"epochs_done": 0}
        return zip_of({"project.json": json.dumps(m)})
    return build


def fifo(folder: Path) -> str:
    path = folder / "data.npz"
    if not path.exists():
        os.mkfifo(path)
    return str(path)


def table(folder: Path) -> str:
    path = folder / "t.csv"
    path.write_text("1,2,0\n3,4,1\n")
    return str(path)


def npy_header(shape, descr: str = "<f4") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def private_file(folder: Path) -> str:
    """A file that is not data: a line of it must never be quoted."""
    path = folder / "shadow"
    path.write_text("root:$6$SECRETHASH:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n")
    return str(path)


def graph_that_cannot_be_built(folder: Path) -> bytes:
    """Trained weights kept, the wire into the head removed: opens (an unfinished graph), cannot run."""
    m = meta()
    m["graph"]["wires"] = m["graph"]["wires"][:-1]
    return zip_of({**members(), "project.json": json.dumps(m)})


def bad_block_id(block_id: str) -> Callable[[Path], bytes]:
    def build(folder: Path) -> bytes:
        text = json.dumps(meta()).replace('"b1"', json.dumps(block_id))
        weights = {k.replace("b1/", f"{block_id}/"): v for k, v in trained_arrays("weights.npz").items()}
        arrays = []
        for key, value in weights.items():
            inner = io.BytesIO()
            np.save(inner, value)
            arrays.append((key[:60000] + ".npy", inner.getvalue()))  # a zip name holds at most 65,535 bytes
        return zip_of({**members(), "project.json": text, "weights.npz": zip_of(arrays, zipfile.ZIP_STORED)})
    return build


def member_declaring(size: int) -> Callable[[Path], bytes]:
    """weights.npz stored (not deflated) and declaring ``size`` bytes it does not hold."""
    def build(folder: Path) -> bytes:
        m = members()
        padded = m["weights.npz"] + bytes(max(0, size // 900 - len(m["weights.npz"])))  # ratio under 1000
        data = zip_of([("project.json", m["project.json"]), ("weights.npz", padded)], zipfile.ZIP_STORED)
        return patch_headers(data, "weights.npz", declared=size)
    return build


def deflated_then(patch) -> Callable[[Path], bytes]:
    def build(folder: Path) -> bytes:
        return patch(zip_of(members()))
    return build


CASES: dict[str, Case] = {
    # 1. compression methods and encryption zipfile cannot read
    "encrypted member": Case(deflated_then(lambda d: patch_headers(d, "project.json", flag=0x1)), "encrypted"),
    "encrypted weights": Case(deflated_then(lambda d: patch_headers(d, "weights.npz", flag=0x1)), "encrypted"),
    "unknown compression method": Case(deflated_then(lambda d: patch_headers(d, "project.json", method=99)),
                                       "compression method 99"),
    "bzip2 member": Case(lambda f: zip_of(members(), zipfile.ZIP_BZIP2), "compression method 12"),
    "lzma member": Case(lambda f: zip_of(members(), zipfile.ZIP_LZMA), "compression method 14"),
    "implode method": Case(deflated_then(lambda d: patch_headers(d, "history.json", method=6)),
                           "compression method 6"),
    # 2. duplicate members
    "two project.json": Case(lambda f: zip_of(list(members().items()) + [("project.json", b"{}")]),
                             "two members named 'project.json'"),
    "two weights.npz": Case(lambda f: zip_of([("weights.npz", npz(b9__W=np.zeros(3, np.float32)))]
                                             + list(members().items())), "two members named 'weights.npz'"),
    "two arrays of one name": Case(with_members(weights=zip_of(
        [("b1/W.npy", b"x"), ("b1/W.npy", b"y")], zipfile.ZIP_STORED)), "two members named 'b1/W.npy'"),
    # 3. JSON nested deeply
    "json nested 990 deep": Case(with_json_text(lambda t: t.replace('"panels": {}', '"panels": {"x": '
                                                                    + "[" * 990 + "1" + "]" * 990 + "}")),
                                 "nested"),
    "json nested 100 000 deep": Case(with_json_text(lambda t: "[" * 100_000 + "]" * 100_000), "nested"),
    "settings nested 200 deep": Case(with_json_text(
        lambda t: t.replace('"units": 12', '"units": ' + json.dumps(nested(200)))), "nested"),
    "history nested deeply": Case(with_members(history='[{"epoch": 1, "x": ' + "[" * 995 + "]" * 995 + "}]"),
                                  "nested"),
    # 4. numbers that are not finite
    "learning rate Infinity": Case(with_json_text(lambda t: t.replace('"learning_rate": 0.01',
                                                                       '"learning_rate": Infinity')), "Infinity"),
    "momentum NaN": Case(with_json_text(lambda t: t.replace('"momentum": 0.9', '"momentum": NaN')), "NaN"),
    "learning rate 1e999": Case(with_json_text(lambda t: t.replace('"learning_rate": 0.01',
                                                                    '"learning_rate": 1e999')),
                                "holds the number 1e999, too large for a float"),
    "clip norm -Infinity": Case(with_json_text(lambda t: t.replace('"clip_norm": 0.0', '"clip_norm": -Infinity')),
                                "Infinity"),
    "learning rate 10^400 as an integer": Case(training_with(learning_rate=10**400), "whole number of 401 digits"),
    "position NaN": Case(with_json_text(lambda t: t.replace("[0.0, 40.0]", "[NaN, 40.0]")), "NaN"),
    "best_val_loss Infinity": Case(with_json_text(lambda t: t.replace('"best_val_loss": null',
                                                                       '"best_val_loss": Infinity')), "Infinity"),
    "history loss NaN": Case(with_members(history=b'[{"epoch": 1, "train_loss": NaN}]'), "NaN"),
    "integer of 5000 digits": Case(with_json_text(lambda t: t.replace('"seed": 0', '"seed": ' + "9" * 5000)),
                                   "holds a whole number of 5,000 digits"),
    # 5. counts beyond bounds
    "steps_per_epoch 10^9": Case(training_with(steps_per_epoch=10**9), "steps_per_epoch must be from 0 to"),
    "epochs 10^9": Case(training_with(epochs=10**9), "epochs must be from 0 to"),
    "batch size 10^9": Case(training_with(batch_size=10**9), "batch_size must be from 1 to"),
    "batch size 0": Case(training_with(batch_size=0), "batch_size must be from 1 to"),
    "early stopping 10^12": Case(training_with(early_stopping=10**12), "early_stopping must be from"),
    "step_epochs 0": Case(training_with(step_epochs=0), "step_epochs must be from 1"),
    "val fraction 5": Case(training_with(val_fraction=5.0), "val_fraction must be between"),
    "epochs_done negative": Case(with_meta(trainer={"epochs_done": -1}), "epochs_done must be a whole number"),
    "epochs_done 10^12": Case(with_meta(trainer={"epochs_done": 10**12}), "epochs_done must be a whole number"),
    "epochs_done a string": Case(with_meta(trainer={"epochs_done": "3"}), "epochs_done must be a whole number"),
    "epochs_without_improvement negative": Case(with_meta(trainer={"epochs_done": 1,
                                                                   "epochs_without_improvement": -4}),
                                                "epochs_without_improvement must be"),
    "trainer steps_per_epoch 10^9": Case(with_meta(trainer={"epochs_done": 1, "steps_per_epoch": 10**9}),
                                         "steps_per_epoch must be a whole number"),
    "trainer a list": Case(with_meta(trainer=[1]), "trainer must be an object"),
    "trainer unknown key": Case(with_meta(trainer={"epochs_done": 1, "evil": 1}), "unknown keys 'evil'"),
    "wire port 10^6": Case(with_json_text(lambda t: t.replace('"port": 0', '"port": 1000000', 1)),
                           "port must be a small whole number"),
    # 6. seeds, graphs that cannot be built, models too large
    "seed -1": Case(training_with(seed=-1), "seed must be from 0 to"),
    "seed 2^40": Case(training_with(seed=2**40), "seed must be from 0 to"),
    "graph that cannot be built": Case(graph_that_cannot_be_built, "cannot be built", ("train", "predict", "export")),
    "8e12 weights from one Input shape": Case(graph_with_input([2**31], 3726),
                                              r"would have 8,001,524,113,444 weights \(32,006 GB as float32\)",
                                              ("train", "predict", "export")),
    "Input shape of 10^20": Case(graph_with_input([10**20]), "values per sample; at most 2,147,483,648",
                                 ("train", "predict", "export")),
    "Input shape of 10^100": Case(graph_with_input([10**100]), "a whole number of 101 digits"),
    # 7. block ids
    "block id with a slash": Case(bad_block_id("b/1"), "block id 'b/1' cannot be used"),
    "block id with NUL": Case(bad_block_id("b\x001"), "cannot be used"),
    "block id of 70 000 characters": Case(bad_block_id("b" * 70_000), "cannot be used"),
    "block id with a newline": Case(bad_block_id("b\n1"), "cannot be used"),
    "block id with a backslash": Case(bad_block_id("b\\1"), "cannot be used"),
    # 8. datasets that cannot be read safely
    "dataset /dev/zero": Case(dataset({"kind": "file", "path": "/dev/zero", "format": "npz"}),
                              "not a regular file", ("train",)),
    "dataset a FIFO": Case(dataset(lambda f: {"kind": "file", "path": fifo(f)}), "not a regular file", ("train",)),
    "dataset a folder as npz": Case(dataset(lambda f: {"kind": "file", "path": str(f), "format": "npz"}),
                                    "is a folder", ("train",)),
    "dataset missing": Case(dataset({"kind": "file", "path": "nowhere/x.npz"}), "does not exist", ("train",)),
    "dataset path with NUL": Case(dataset({"kind": "file", "path": "a\x00b.npz"}), "path must be a file path"),
    "dataset path a number": Case(dataset({"kind": "file", "path": 7}), "path must be a file path"),
    "moving shapes n 10^9": Case(dataset({"kind": "builtin", "name": "moving-shapes", "params": {"n": 10**9}}),
                                 "n .* must be from 4 to 1,000,000", ("train",)),
    "moving shapes of 2 GB": Case(dataset({"kind": "builtin", "name": "moving-shapes",
                                           "params": {"n": 500_000, "frames": 256, "size": 256}}),
                                  "more than the .* GateScope holds", ("train",)),
    "adding n 10^9": Case(dataset({"kind": "builtin", "name": "adding", "params": {"n": 10**9}}),
                          "n must be from 1 to", ("train",)),
    "text length 10^9": Case(dataset({"kind": "builtin", "name": "text", "params": {"length": 10**9}}),
                             "length must be from 1 to", ("train",)),
    "params a list": Case(dataset({"kind": "builtin", "name": "digits", "params": ["image"]}),
                          "params must be an object"),
    "params a string": Case(dataset({"kind": "builtin", "name": "adding", "params": "n=5"}),
                            "params must be an object"),
    "param n a string": Case(dataset({"kind": "builtin", "name": "adding", "params": {"n": "many"}}),
                             "n must be a whole number", ("train",)),
    "param noise a list": Case(dataset({"kind": "builtin", "name": "sine", "params": {"noise": [1]}}),
                               "noise must be a number", ("train",)),
    "unknown param": Case(dataset({"kind": "builtin", "name": "adding", "params": {"evil": 1}}),
                          "bad parameters", ("train",)),
    "video folder frames 10^6": Case(dataset(lambda f: {"kind": "builtin", "name": "video-folder",
                                                        "params": {"folder": str(f), "frames": 10**6}}),
                                     "frames must be from 1 to 256", ("train",)),
    "csv label column a list": Case(dataset(lambda f: {"kind": "file", "path": table(f),
                                                       "params": {"label_column": [1]}}),
                                    "label_column must be a whole number", ("train",)),
    "csv of a private file": Case(dataset(lambda f: {"kind": "file", "path": private_file(f), "format": "csv"}),
                                  r"shadow, line 2: is not all numbers$", ("train",)),
    "dataset name a number": Case(dataset({"kind": "builtin", "name": 5}), "name must be the name of a bundled"),
    # 9. optimizer state and trainer records
    "optimizer state NaN": Case(with_members(optimizer=optimizer_with(**{"b1__W__m": np.full((64, 12), np.nan,
                                                                                             np.float32)})),
                                "optimizer state b1/W/m holds non-finite"),
    "optimizer step_count a vector": Case(with_members(optimizer=optimizer_with(step_count=np.arange(3))),
                                          "step_count must be one whole number"),
    "optimizer step_count negative": Case(with_members(optimizer=optimizer_with(step_count=np.array(-5))),
                                          "step_count must be one whole number"),
    "optimizer step_count a float": Case(with_members(optimizer=optimizer_with(step_count=np.array(2.5))),
                                         "step_count must be one whole number"),
    "optimizer state of no block": Case(with_members(optimizer=optimizer_with(**{"ghost__W__m": np.zeros(2,
                                                                                                        np.float32)})),
                                        "graph has no block 'ghost'"),
    "optimizer state misnamed": Case(with_members(optimizer=optimizer_with(b1=np.zeros(2, np.float32))),
                                     "not BLOCK/NAME/SLOT"),
    "optimizer state misshapen": Case(with_members(optimizer=optimizer_with(**{"b1__W__m": np.zeros(3, np.float32)})),
                                      "lacks b1/W/m or has the wrong shape", ("train",)),
    "history record with a string": Case(with_members(history=b'[{"epoch": 1, "train_loss": "low"}]'),
                                         "train_loss must be a number or null"),
    "history record without epoch": Case(with_members(history=b'[{"train_loss": 1.0}]'), "whole epoch number"),
    "history record epoch 0": Case(with_members(history=b'[{"epoch": 0}]'), "whole epoch number"),
    "history record a list": Case(with_members(history=b"[[1, 2]]"), "whole epoch number"),
    "history an object": Case(with_members(history=b'{"epoch": 1}'), "must be a list of epoch records"),
    "history record nested value": Case(with_members(history=b'[{"epoch": 1, "lr": {"a": 1}}]'),
                                        "lr must be a number or null"),
    "weights NaN": Case(with_members(weights=npz(**{k.replace("/", "__"): np.full_like(v, np.nan)
                                                   for k, v in trained_arrays("weights.npz").items()})),
                        "non-finite"),
    "weights as integers": Case(with_members(weights=npz(**{k.replace("/", "__"): v.astype(np.int32)
                                                          for k, v in trained_arrays("weights.npz").items()})),
                                "non-float"),
    "weights complex": Case(with_members(weights=npz(b1__W=np.zeros((64, 12), np.complex64))), "complex64 values"),
    "weights as text": Case(with_members(weights=npz(b1__W=np.array(["a", "b"]))), "values; only numbers"),
    "steps losses NaN": Case(with_members(steps=npz(global_step=np.arange(3), loss=np.full(3, np.nan, np.float32))),
                             "loss must hold finite numbers"),
    "steps too large": Case(with_members(steps=npz(global_step=np.array([0, 2**63 - 1]),
                                                   loss=np.ones(2, np.float32))), "whole step numbers"),
    # 14. sizes checked before reading
    "weights declaring 50 MB for a tiny model": Case(member_declaring(50 * 10**6), "more than this model's"),
    "weights declaring 4 GiB": Case(member_declaring(2**32 - 1), "more than GateScope reads"),
    "history bomb": Case(lambda f: zip_of({**members(), "history.json": b" " * (60 * 2**20)}), "absurd"),
    "weights member of many arrays": Case(with_members(weights=zip_of([(f"a{i}.npy", b"") for i in range(3)]
                                                                      + [("a1.npy", b"")])), "two members"),
    "array header declaring 10^12 values": Case(with_members(weights=zip_of({"b1/W.npy": npy_header((10**6, 10**6))
                                                                            + bytes(16)})),
                                                r"declares shape \(1000000, 1000000\) .* it is damaged"),
    "array header garbage": Case(with_members(weights=zip_of({"b1/W.npy": b"\x93NUMPY\x01\x00\x10\x00{'descr': x}   \n"})),
                                 r"not a readable array \(its header is damaged\)"),
    "array header unknown version": Case(with_members(weights=zip_of({"b1/W.npy": b"\x93NUMPY\x07\x00" + b"\0" * 40})),
                                         "not a readable array|unknown array format"),
    "npz member not an array": Case(with_members(weights=zip_of({"readme.txt": b"hi"})), "which is not an array"),
    "npz that is not a zip": Case(with_members(weights=b"not a zip at all"), "damaged"),
    "npz member escaping": Case(with_members(weights=zip_of({"../x.npy": b""})), "points outside"),
    # the classes the earlier tests held, kept beside the new ones
    "not a zip": Case(lambda f: b"this is a text file, not a project", "not a zip archive"),
    "empty file": Case(lambda f: b"", "not a zip archive"),
    "truncated in half": Case(lambda f: zip_of(members())[:len(zip_of(members())) // 2], "not a zip archive|damaged"),
    "zeroed weights bytes": Case(lambda f: _zero_inside(zip_of(members()), b"weights.npz"), "damaged|not a zip"),
    "escaping member": Case(lambda f: zip_of({**members(), "../evil.txt": b"x"}), "points outside"),
    "no project.json": Case(with_members(project=None), "has no project.json"),
    "foreign json": Case(with_members(project=b'{"hello": 1}'), "not a GateScope project"),
    "newer schema": Case(with_meta(schema_version=99), "saved by a newer GateScope"),
    "schema version 10^29": Case(with_meta(schema_version=10**29), "saved by a newer GateScope"),
    "schema version 10^40": Case(with_meta(schema_version=10**40), "a whole number of 41 digits"),
    "project.json not UTF-8": Case(with_members(project=b"\xff\xfe{}"), "not valid JSON"),
    "name a number": Case(with_meta(name=5), "name must be a string"),
    "position 1e300": Case(with_meta(positions={"b0": [1e300, 0]}), "must be two numbers"),
    "unknown block type": Case(with_json_text(lambda t: t.replace('"Tanh"', '"Teleporter"')), "unknown type"),
}


def _zero_inside(data: bytes, name: bytes) -> bytes:
    out = bytearray(data)
    start = out.find(name) + 60
    out[start:start + 40] = bytes(40)
    return bytes(out)


def input_batch(folder: Path) -> Path:
    """A valid --input batch for the trained project."""
    path = folder / "x.npy"
    np.save(path, np.random.default_rng(0).random((4, 64)).astype(np.float32))
    return path


def make(case: str, folder: Path) -> Path:
    """Write case ``case``'s file into ``folder`` as ``project.gscope``; returns its path."""
    path = folder / "project.gscope"
    path.write_bytes(CASES[case].build(folder))
    return path


def snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every entry under ``folder``: a file's bytes, or what kind of entry it is."""
    out: dict[str, bytes | str] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_fifo():
            out[str(path.relative_to(folder))] = "fifo"
        elif path.is_file():
            out[str(path.relative_to(folder))] = path.read_bytes()
        elif path.is_dir():
            out[str(path.relative_to(folder))] = "folder"
    return out
