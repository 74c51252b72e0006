"""Property-based fuzzing of the project loader (issue 18).

Random mutations of a real trained project (its zip bytes, its members, the values inside its
JSON and its arrays) must each end in a project that opens, saves and opens again, or in one
ProjectError sentence; within a bounded time and memory, and never changing the file.

The runs are derandomized (the same examples every run, so CI cannot flake) and their number
is ``GATESCOPE_FUZZ_EXAMPLES`` per strategy (default 150); ``GATESCOPE_FUZZ_EXAMPLES=5000
pytest tests/studio/test_fuzz_project.py`` searches deeper.
"""
from __future__ import annotations

import io
import json
import math
import os
import time
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from damaged_files import members, snapshot, zip_of  # noqa: E402
from gatescope.studio.project import ProjectError, load_project, save_project  # noqa: E402

EXAMPLES = int(os.environ.get("GATESCOPE_FUZZ_EXAMPLES", "150"))
TIME_LIMIT_S = 5.0               # the untouched project opens in about 10 ms; a loaded CI machine is slower
MEMORY_LIMIT_BYTES = 64 * 2**20  # the file is 30 KB; any mutation that makes opening hold more is a finding

FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def holds(data: bytes, folder) -> None:
    """The property: ``data`` as a project file opens (then saves and reopens) or is refused in
    one sentence, in bounded time and memory, and the file and its folder are unchanged."""
    for entry in folder.iterdir():
        entry.unlink()
    path = folder / "fuzzed.gscope"
    path.write_bytes(data)
    before = snapshot(folder)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        project = load_project(path)
    except ProjectError as exc:
        project, message = None, str(exc)
        assert message and "\n" not in message and "Traceback" not in message, message
    finally:
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert elapsed < TIME_LIMIT_S, f"opening took {elapsed:.1f} s"
    assert peak < MEMORY_LIMIT_BYTES, f"opening held {peak / 2**20:.0f} MiB"
    assert snapshot(folder) == before, "opening never changes the file or writes beside it"
    if project is not None:
        again = save_project(project, folder / "again.gscope")
        reopened = load_project(again)
        assert reopened.graph == project.graph and reopened.training == project.training


BASE = None


def base() -> bytes:
    global BASE
    if BASE is None:
        BASE = zip_of(members())
    return BASE


# ----------------------------------------------------------------------------- strategies
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


def _paths(value, prefix=()):
    """Every place in a JSON value: the path to it (keys and indices)."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, prefix + (index,))


def _replace(value, path, new, delete=False):
    if not path:
        return new
    parent = value
    for step in path[:-1]:
        parent = parent[step]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    return value


@st.composite
def json_mutations(draw, member: str):
    """The trained project with one to three places of ``member``'s JSON replaced or deleted."""
    value = json.loads(members()[member])
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(value))
        path = paths[draw(st.integers(0, len(paths) - 1))]
        delete = bool(path) and draw(st.booleans())
        value = _replace(value, path, None if delete else draw(json_values), delete)
    text = json.dumps(value, allow_nan=True)
    return zip_of({**members(), member: text})


@st.composite
def byte_mutations(draw):
    """The zip's bytes with some flipped, a run overwritten, or the end cut off."""
    data = bytearray(base())
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(("flip", "run", "cut", "insert")))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "run":
            run = draw(st.binary(min_size=1, max_size=16))
            data[at:at + len(run)] = run
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[at:]
            if not data:
                break
    return bytes(data)


MEMBER_NAMES = ("project.json", "history.json", "weights.npz", "optimizer.npz", "steps.npz", "other.bin",
                "../up.txt", "/abs", "weights.npz/x")


@st.composite
def member_mutations(draw):
    """Members dropped, repeated, renamed or replaced with bytes, and the method stored or deflated."""
    items = list(members().items())
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(("drop", "repeat", "rename", "replace", "swap")))
        if not items:
            break
        index = draw(st.integers(0, len(items) - 1))
        name, data = items[index]
        if kind == "drop":
            items.pop(index)
        elif kind == "repeat":
            items.insert(draw(st.integers(0, len(items))), (name, draw(st.binary(max_size=64)) or data))
        elif kind == "rename":
            items[index] = (draw(st.sampled_from(MEMBER_NAMES)), data)
        elif kind == "replace":
            items[index] = (name, draw(st.binary(max_size=256)))
        else:
            other = draw(st.integers(0, len(items) - 1))
            items[index], items[other] = (name, items[other][1]), (items[other][0], data)
    method = draw(st.sampled_from((zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return zip_of(items, method)


def _array_dtypes():
    return st.sampled_from(("<f4", ">f4", "<f8", "<f2", "<i8", "<u1", "?", "<c8", "<U3", "|S2", "<m8"))


@st.composite
def array_mutations(draw):
    """One array of weights, optimizer state or steps replaced by another of any dtype and shape."""
    member = draw(st.sampled_from(("weights.npz", "optimizer.npz", "steps.npz")))
    with zipfile.ZipFile(io.BytesIO(members()[member])) as z:
        arrays = {n[:-4]: np.load(z.open(n), allow_pickle=False) for n in z.namelist()}
    name = draw(st.sampled_from(sorted(arrays) + ["b1/W/extra", "step_count", "ghost/W"]))
    dtype = np.dtype(draw(_array_dtypes()))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=70))
    if math.prod(shape) * dtype.itemsize > 2**20:
        shape = (3,)
    arrays[name] = draw(hnp.arrays(dtype, shape))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return zip_of({**members(), member: buffer.getvalue()})


# ----------------------------------------------------------------------------- the properties
@FUZZ
@given(data=json_mutations("project.json"))
def test_project_json_mutations(data, folder):
    holds(data, folder)


@FUZZ
@given(data=json_mutations("history.json"))
def test_history_mutations(data, folder):
    holds(data, folder)


@FUZZ
@given(data=byte_mutations())
def test_byte_mutations(data, folder):
    holds(data, folder)


@FUZZ
@given(data=member_mutations())
def test_member_mutations(data, folder):
    holds(data, folder)


@FUZZ
@given(data=array_mutations())
def test_array_mutations(data, folder):
    holds(data, folder)


def test_the_property_sees_both_outcomes(folder):
    """Not vacuous: the unmutated project opens (and saves), and a file that is not one is refused."""
    holds(base(), folder)
    assert load_project(folder / "fuzzed.gscope").trained
    holds(b"not a project", folder)
    with pytest.raises(ProjectError, match="not a zip archive"):
        load_project(folder / "fuzzed.gscope")
