"""Checks every reader of a person's files goes through: what a path is, how large, how many.

A path named in a project may point anywhere its reader can read: a device that never ends
(``/dev/zero`` was read until 7.5 GB were resident), a FIFO that blocks the reader forever, a
file of gigabytes, a zip member that inflates a thousandfold, an ``.npy`` header declaring
10^12 values. So readers take only regular files and folders, look at sizes before reading
anything, and hold every count a file can set within bounds; each refusal is a ``DataError``
naming the problem. Callers that are not about data (project files) catch it and say it in
their own words.

Bounds (each measured against what GateScope is for: the bundled examples use at most 15 MB
of samples, a practitioner's small classifier some hundreds of MB):
  ``MAX_FILE_BYTES``     4 GiB: any one file or zip member read whole.
  ``MAX_TEXT_BYTES``     512 MiB: a CSV (read as text, then parsed row by row).
  ``MAX_SAMPLE_VALUES``  2^29 values (2 GiB as float32): all samples of one dataset together.
  ``MAX_COMPRESSION_RATIO`` 1000, for zip members over 1 MiB: deflate gives at most about 1032
                         on any data, so more is a crafted bomb.
  ``MAX_GENERATED``      10^6 samples of a generated dataset (the examples ask for 32 to 10,000).
  ``MAX_SEED``           2^31 - 1, as the window's seed field.
"""
from __future__ import annotations

import math
import os
import stat
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

from gatescope.compute.datasets import DataError

MAX_FILE_BYTES = 4 * 2**30
MAX_TEXT_BYTES = 512 * 2**20
MAX_SAMPLE_VALUES = 2**29
MAX_COMPRESSION_RATIO = 1000
MAX_SEED = 2**31 - 1
MAX_GENERATED = 1_000_000  # samples a generated dataset may be asked for
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
ARRAY_KINDS = "biufcUS"  # booleans, integers, floats, complex (callers refuse it), text

ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, OSError,
              ValueError, OverflowError)
"""What ``zipfile`` raises on a damaged archive: BadZipFile for broken structure and CRC
mismatches, zlib.error and EOFError for corrupt or cut deflate streams, NotImplementedError for
compression methods it lacks, RuntimeError for encrypted members, OSError, ValueError and
OverflowError for offsets and sizes that do not fit (the audit's fuzzing met each)."""


def size_text(n_bytes: float) -> str:
    """``'3.2 GB'``, ``'512 KB'``: a size as a person reads it (powers of 1000)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.3g} {unit}"
    return f"{int(n_bytes)} bytes"


# ----------------------------------------------------------------------------- paths
def regular_file(path: str | os.PathLike, what: str = "the data file", max_bytes: int = MAX_FILE_BYTES) -> Path:
    """``path`` when it is a regular file (symbolic links followed) of at most ``max_bytes``.

    DataError for a missing path, a folder, a device, FIFO or socket (which may never end or
    block forever), and for a file larger than ``max_bytes``; the message names the path.
    """
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise DataError(f"{what} {str(path)!r} does not exist; choose another file") from None
    except OSError as exc:
        raise DataError(f"{what} {str(path)!r} cannot be read ({exc.strerror or exc})") from None
    except ValueError:  # a NUL inside the path
        raise DataError(f"{what} {str(path)!r} is not a usable path") from None
    if stat.S_ISDIR(info.st_mode):
        raise DataError(f"{what} {str(path)!r} is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise DataError(f"{what} {str(path)!r} is not a regular file (a device, pipe or socket); "
                        "GateScope reads only ordinary files")
    if info.st_size > max_bytes:
        raise DataError(f"{what} {path.name} is {size_text(info.st_size)}, more than the "
                        f"{size_text(max_bytes)} GateScope reads; use a smaller file")
    return path


def folder(path: str | os.PathLike, what: str = "the data folder") -> Path:
    """``path`` when it is a folder; DataError naming it otherwise."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{what} {str(path)!r} is not a folder" +
                        ("" if path.exists() else " (it does not exist)"))
    return path


def regular_files_in(directory: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Regular files (not hidden) with one of ``suffixes`` directly in ``directory``, sorted.

    Devices, FIFOs and sockets are left out: ``Path.is_file`` is True for regular files only.
    """
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith("."))


# ----------------------------------------------------------------------------- parameters
def whole_number(where: str, name: str, value: Any, low: int, high: int) -> int:
    """``value`` as an int in ``low..high``; DataError naming ``name`` for anything else
    (strings, lists, booleans, fractions, numbers out of range)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or (isinstance(value, (float, np.floating)) and not float(value).is_integer()):
        raise DataError(f"{where}: {name} must be a whole number from {low:,} to {high:,}, not {value!r}")
    number = int(value)
    if not low <= number <= high:
        raise DataError(f"{where}: {name} must be from {low:,} to {high:,}, not {number:,}")
    return number


def real_number(where: str, name: str, value: Any, low: float, high: float) -> float:
    """``value`` as a finite float in ``low..high``; DataError naming ``name`` otherwise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(value)):
        raise DataError(f"{where}: {name} must be a number from {low:g} to {high:g}, not {value!r}")
    number = float(value)
    if not low <= number <= high:
        raise DataError(f"{where}: {name} must be from {low:g} to {high:g}, not {number:g}")
    return number


def flag(where: str, name: str, value: Any) -> bool:
    """``value`` when it is true or false; DataError naming ``name`` otherwise."""
    if not isinstance(value, (bool, np.bool_)):
        raise DataError(f"{where}: {name} must be true or false, not {value!r}")
    return bool(value)


def sample_budget(where: str, samples: int, values_per_sample: int) -> None:
    """DataError when ``samples`` samples of ``values_per_sample`` values each would exceed
    ``MAX_SAMPLE_VALUES``; checked before anything is allocated."""
    total = int(samples) * int(values_per_sample)
    if total > MAX_SAMPLE_VALUES:
        raise DataError(f"{where}: {samples:,} samples of {values_per_sample:,} values would take "
                        f"{size_text(4 * total)} as float32, more than the {size_text(4 * MAX_SAMPLE_VALUES)} "
                        "GateScope holds; ask for fewer or smaller samples")


# ----------------------------------------------------------------------------- zip archives and arrays
@contextmanager
def reading_zip(where: str) -> Iterator[None]:
    """Inside it, whatever ``zipfile`` raises on a damaged archive (``ZIP_ERRORS``) becomes one
    DataError saying ``where`` is damaged; DataErrors pass as they are."""
    try:
        yield
    except DataError:
        raise
    except ZIP_ERRORS as exc:
        raise DataError(f"{where} is damaged: its zip structure or a member's bytes are broken "
                        f"({type(exc).__name__}: {exc})") from None


def zip_members(archive: zipfile.ZipFile, where: str, max_member_bytes: int = MAX_FILE_BYTES,
                ratio_exempt: tuple[str, ...] = ()) -> dict[str, zipfile.ZipInfo]:
    """The members of ``archive`` by name, after checking what their headers declare.

    DataError for: a name twice (readers disagree on which one counts: ``zipfile`` takes the
    last, ``unzip`` the first), a name that is absolute or climbs out with ``..``, an encrypted
    member, a compression method other than stored or deflated, a member declaring more than
    ``max_member_bytes``, a member declaring an absurd compression ratio (``absurdly_compressed``;
    not checked for ``ratio_exempt``, members the caller bounds itself), and members declaring
    more than ``MAX_FILE_BYTES`` together.
    """
    infos: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in archive.infolist():
        name = info.filename
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":"):
            raise DataError(f"{where} has a member named {name!r} that points outside the archive; refusing it")
        if name in infos:
            raise DataError(f"{where} holds two members named {name!r}; tools disagree on which one counts, "
                            "so it is refused")
        if info.flag_bits & 0x1:
            raise DataError(f"{where}: member {name!r} is encrypted; GateScope reads only unencrypted archives")
        if info.compress_type not in ZIP_METHODS:
            raise DataError(f"{where}: member {name!r} uses compression method {info.compress_type}; "
                            "GateScope reads stored and deflated members only")
        if info.file_size > max_member_bytes or (name not in ratio_exempt and absurdly_compressed(info)):
            raise_absurd(info, where)
        total += info.file_size
        infos[name] = info
    if total > MAX_FILE_BYTES:
        raise DataError(f"{where} declares {total:,} bytes in all, more than GateScope reads; refusing it")
    return infos


def absurdly_compressed(info: zipfile.ZipInfo) -> bool:
    """A member over 1 MiB declaring more than ``MAX_COMPRESSION_RATIO`` times its stored bytes."""
    return info.file_size > 2**20 and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1)


def raise_absurd(info: zipfile.ZipInfo, where: str) -> None:
    raise DataError(f"{where} declares a member {info.filename!r} of {info.file_size:,} bytes, which is absurd "
                    "for what it holds; refusing it")


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, chunk: int = 2**20) -> bytes:
    """The bytes of one checked member, read in chunks: never more than it declares (plus one
    chunk), its CRC checked by ``zipfile`` at the end. DataError when it is not the size it declares."""
    parts = bytearray()
    with archive.open(info) as stream:
        while len(parts) <= info.file_size:
            block = stream.read(chunk)
            if not block:
                break
            parts += block
    if len(parts) != info.file_size:
        raise DataError(f"{where}: member {info.filename} is not the size it declares")
    return bytes(parts)


def read_npy(stream: IO[bytes], stored_bytes: int, where: str) -> np.ndarray:
    """One ``.npy`` array from ``stream`` (holding ``stored_bytes`` bytes), never unpickled.

    The header is read first: DataError for an unknown format, object values (which only a
    pickle can hold) and a shape whose values would not fit in the bytes stored, so a header
    declaring 10^12 values costs nothing. Values of any plain dtype come back as they are;
    callers say which they take.
    """
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise DataError(f"{where} has an unknown array format {version}")
    except DataError:
        raise
    except (ValueError, OSError, EOFError, SyntaxError, TypeError):
        raise DataError(f"{where} is not a readable array (its header is damaged)") from None
    if dtype.hasobject:
        raise DataError(f"{where} holds object arrays (ragged, or Python objects), which are never loaded; "
                        "save regular numeric arrays")
    if dtype.kind not in ARRAY_KINDS:
        raise DataError(f"{where} holds {dtype} values; GateScope reads arrays of numbers (or text labels)")
    count = math.prod(int(s) for s in shape)
    if count * dtype.itemsize > stored_bytes:
        raise DataError(f"{where} declares shape {tuple(shape)} of {dtype}, {size_text(count * dtype.itemsize)}, "
                        f"but stores {size_text(stored_bytes)}; it is damaged")
    values = np.empty(count, dtype=dtype)
    target = memoryview(values.view(np.uint8)) if values.nbytes else memoryview(b"")
    filled = 0
    try:
        while filled < len(target):
            got = stream.readinto(target[filled:])
            if not got:
                break
            filled += got
    except OSError as exc:
        raise DataError(f"{where} cannot be read ({exc.strerror or exc})") from None
    if filled != len(target):
        raise DataError(f"{where} stores fewer values than its shape {tuple(shape)} needs; it is damaged")
    return values.reshape(shape, order="F" if fortran else "C")


def npz_arrays(archive: zipfile.ZipFile, where: str) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, array)`` for each member ``NAME.npy`` of an ``.npz`` archive, each checked as
    ``zip_members`` and ``read_npy`` say. DataError for a member that is not an array."""
    for name, info in zip_members(archive, where).items():
        if not name.endswith(".npy"):  # names may hold '/': nothing is ever extracted to disk
            raise DataError(f"{where} holds {name!r}, which is not an array")
        with archive.open(info) as stream:
            yield name[:-4], read_npy(stream, info.file_size, f"{where}, array {name[:-4]!r},")
