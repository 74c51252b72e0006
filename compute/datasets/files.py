"""A person's own data: an ``.npz`` of arrays, a table of numbers (``.csv``, ``.tsv``, ``.txt``),
or a folder with one subfolder per class holding images or videos.

``load_file(path, format=None, **params)`` returns a complete ``Dataset`` or raises
``DataError`` naming the problem; nothing is ever half-loaded. ``format`` is ``npz``, ``csv``,
``images`` or ``videos``; when None, ``detect_format`` reads it from the path (a folder is
``images`` or ``videos`` by what its class subfolders hold).

Parameters (all optional; ``LOADER_OPTIONS`` lists which format takes which):
  ``task``          ``classification`` (default) or ``regression`` (npz and tables).
  ``label_column``  tables: index of the label column (default -1, the last; negative counts from the end).
  ``resize``        images: ``(H, W)`` every image is resized to (needed when their sizes differ).
  ``grey``          images and videos: True to read every frame as one grey channel.
  ``frames``, ``stride``, ``size``   videos: clips of ``frames`` frames, a clip starting every
                    ``stride`` frames (0: ``frames``, no overlap), each frame resized to ``size``
                    (one number or ``(H, W)``).

Class labels that are whole numbers but not 0, 1, ..., K-1 (labels 3 and 7, or 1 to 10) are
numbered 0..K-1 in sorted order and keep their values as class names; the dataset's
``meta["warnings"]`` says so, as it says what was skipped, in sentences the data panel shows.

Only regular files and folders are read, each file's size is checked before it is read, and
a table's line is quoted in an error only when the file looks like data (a .csv, .tsv or .txt
that has already given rows of numbers); otherwise the message names the file and the line
number alone, so a project pointing at a private file never echoes it (``checks``).
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from gatescope.compute.datasets import Dataset, DataError
from gatescope.compute.datasets.checks import (MAX_FILE_BYTES, MAX_SAMPLE_VALUES, MAX_TEXT_BYTES, flag, folder,
                                               npz_arrays, reading_zip, regular_file, regular_files_in,
                                               sample_budget, size_text, whole_number)

FORMATS = ("npz", "csv", "images", "videos")
TABLE_SUFFIXES = (".csv", ".tsv", ".txt")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
MAX_IMAGE_BYTES = 64 * 2**20
MAX_IMAGES = 1_000_000
# Which loader option each format takes (the data panel shows exactly these controls).
LOADER_OPTIONS = {"npz": ("task",), "csv": ("task", "label_column"), "images": ("resize", "grey"),
                  "videos": ("frames", "stride", "size", "grey")}


def _video_suffixes() -> tuple[str, ...]:
    from gatescope.compute.datasets.video import VIDEO_SUFFIXES
    return VIDEO_SUFFIXES


def _class_folders(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _count_files(folders: list[Path], suffixes: tuple[str, ...]) -> int:
    return sum(1 for folder in folders for p in folder.iterdir()
               if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith("."))


def detect_format(path: str | os.PathLike) -> str:
    """``npz``, ``csv``, ``images`` or ``videos`` for ``path``; DataError when it is none of them.

    A folder is ``videos`` when its class subfolders hold more video files than images, else
    ``images``; a file is known by its suffix (``.csv``, ``.tsv`` and ``.txt`` are tables).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"the data file {str(path)!r} does not exist; choose another file")
    if path.is_dir():
        classes = _class_folders(path)
        videos = _count_files(classes, _video_suffixes())
        return "videos" if videos > _count_files(classes, IMAGE_SUFFIXES) else "images"
    if not path.is_file():      # a device, pipe or socket: say so, not "cannot read '' files"
        regular_file(path, "the data file")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return "npz"
    if suffix in TABLE_SUFFIXES:
        return "csv"
    raise DataError(f"{path.name}: cannot read {suffix + ' files' if suffix else 'files without a suffix'}; use an .npz, a table "
                    "(.csv, .tsv, .txt), or a folder with one subfolder of images or videos per class")


def load_file(path: str | os.PathLike, format: str | None = None, **params) -> Dataset:
    """The dataset stored at ``path``.

    Returns a ``Dataset`` whose ``x`` is float32 batch-first (images (N, C, H, W) scaled to
    0..1) and ``y`` int64 labels 0..K-1 (or float32 targets with ``task='regression'``).
    Raises DataError for a missing file, an unknown format or parameter, or bad data.
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise DataError(f"the data file must be a path, not {path!r}; choose a file")
    path = Path(path)
    task = params.pop("task", "classification")
    if task not in ("classification", "regression"):
        raise DataError(f"task must be 'classification' or 'regression', not {task!r}")
    if format is None:
        format = detect_format(path)
    if format not in FORMATS:
        raise DataError(f"{path.name}: cannot read {format!r} files; use an .npz, a table (.csv, .tsv, .txt) "
                        "or a folder of images or videos")
    if format in ("images", "videos"):
        folder(path, f"the {format[:-1]} folder")
    else:
        regular_file(path, "the data file", MAX_TEXT_BYTES if format == "csv" else MAX_FILE_BYTES)
    loader = {"npz": _load_npz, "csv": _load_csv, "images": _load_images, "videos": _load_videos}[format]
    unknown = sorted(set(params) - set(LOADER_OPTIONS[format]))
    if unknown:
        raise DataError(f"{path.name}: a {format} dataset has no option {', '.join(unknown)} "
                        f"(it takes {', '.join(LOADER_OPTIONS[format])})")
    return loader(path, task, **params)


def _check_labels(y: np.ndarray, task: str, where: str) -> np.ndarray:
    """``y`` as int64 class labels or float32 targets; DataError if it cannot be."""
    if y.dtype == object:
        raise DataError(f"{where}: the labels are not plain numbers (an object or ragged array)")
    if task == "regression":
        if not np.issubdtype(y.dtype, np.number) or not np.isfinite(y).all():
            raise DataError(f"{where}: regression targets must be finite numbers")
        return y.astype(np.float32)
    if not np.issubdtype(y.dtype, np.number):
        raise DataError(f"{where}: class labels must be whole numbers 0, 1, 2, ...; found {y.dtype} values")
    if not np.isfinite(y).all() or not np.array_equal(y, np.round(y)):
        raise DataError(f"{where}: class labels must be whole numbers 0, 1, 2, ...; found non-integer values "
                        "(if they are numbers to predict, choose Regression as the task)")
    if y.size and y.min() < 0:
        raise DataError(f"{where}: class labels must be 0 or more; found {int(y.min())}")
    return y.astype(np.int64)


def _check_samples(x: np.ndarray, where: str) -> np.ndarray:
    if x.dtype == object:
        raise DataError(f"{where}: the samples are not a regular array of numbers "
                        "(samples of different lengths, or Python objects)")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise DataError(f"{where}: samples must be real numbers, not {x.dtype}")
    if x.ndim < 2:
        raise DataError(f"{where}: x must hold one sample per row; it has shape {x.shape}")
    sample_budget(where, len(x), int(np.prod(x.shape[1:])))
    if not np.isfinite(x).all():
        bad = int(np.argwhere(~np.isfinite(x.reshape(len(x), -1)))[0, 0])
        raise DataError(f"{where}: x holds NaN or Inf values (first in sample {bad}); clean or drop them")
    return x.astype(np.float32)


def _number_classes(labels: list[np.ndarray], where: str) -> tuple[list[np.ndarray], list[str], list[str]]:
    """Class labels numbered 0..K-1: ``(labels, class_names, warnings)``.

    Labels already 0..K-1 (every value present) are kept with names "0".."K-1". Others (3 and 7;
    1 to 10; 0 and 2) are numbered in sorted order and keep their values as names, so a model
    never gets score slots for classes that have no sample; the warning says so.
    """
    values = np.unique(np.concatenate([y.reshape(-1) for y in labels]))
    if np.array_equal(values, np.arange(len(values))):
        return labels, [str(int(v)) for v in values], []
    numbered = [np.searchsorted(values, y).astype(np.int64) for y in labels]
    names = [str(int(v)) for v in values]
    shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
    warning = (f"{where}: the labels are {shown}, not 0 to {len(values) - 1}; they are numbered as classes "
               f"0 to {len(values) - 1} in that order and keep their values as class names")
    return numbered, names, [warning]


# ----------------------------------------------------------------------------- npz
def _load_npz(path: Path, task: str) -> Dataset:
    """Arrays ``x`` and ``y`` (and optionally ``x_test`` with ``y_test``) from an .npz."""
    try:
        with open(path, "rb") as handle:
            magic = handle.read(6)
    except OSError as exc:
        raise DataError(f"{path.name}: cannot be opened ({exc.strerror or exc})") from None
    if magic == b"\x93NUMPY":
        raise DataError(f"{path.name}: holds a single array, not an .npz with arrays named x and y")
    if not magic.startswith(b"PK"):  # every .npz is a zip archive
        raise DataError(f"{path.name}: is not a readable .npz file (it is not a zip archive of arrays)")
    with reading_zip(path.name), zipfile.ZipFile(path) as archive:
        arrays = dict(npz_arrays(archive, path.name))
    missing = [name for name in ("x", "y") if name not in arrays]
    if missing:
        raise DataError(f"{path.name}: has no array named {missing[0]}; it holds "
                        f"{', '.join(sorted(arrays)) or 'nothing'} (name the arrays x and y)")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{path.name}: has only one of x_test and y_test; give both or neither")
    parts = [("x", "y")] + ([("x_test", "y_test")] if "x_test" in arrays else [])
    loaded = {}
    for xname, yname in parts:
        x = _check_samples(arrays[xname], f"{path.name} ({xname})")
        y = _check_labels(arrays[yname], task, f"{path.name} ({yname})")
        if len(x) != len(y):
            raise DataError(f"{path.name}: {xname} has {len(x)} samples but {yname} has {len(y)} labels; "
                            "they must agree")
        loaded[xname], loaded[yname] = x, y
    names, warnings = [], []
    if task == "classification":
        ynames = [name for _, name in parts]
        numbered, names, warnings = _number_classes([loaded[n] for n in ynames], path.name)
        loaded.update(zip(ynames, numbered))
    return Dataset(path.stem, loaded["x"], loaded["y"], task, names, x_test=loaded.get("x_test"),
                   y_test=loaded.get("y_test"), description=f"arrays from {path.name}",
                   meta={"source": str(path), "warnings": warnings})


# ----------------------------------------------------------------------------- csv
def _delimiter(line: str) -> str | None:
    """The column separator of a table's first line: tab, semicolon or comma, whichever the line
    holds most of; None (any run of spaces) when it holds none of them."""
    counts = {sep: line.count(sep) for sep in ("\t", ";", ",")}
    best = max(counts, key=counts.get)
    return best if counts[best] else None


def _load_csv(path: Path, task: str, label_column: int = -1) -> Dataset:
    """Rows of numbers, one sample each, separated by commas, semicolons, tabs or spaces; the label
    in ``label_column``; an optional header row."""
    label_column = whole_number(path.name, "label_column", label_column, -2**20, 2**20)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path.name}: cannot be read as text ({exc})") from None
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    del text
    if not lines:
        raise DataError(f"{path.name}: is empty")
    delimiter = _delimiter(lines[-1][1])  # the last line: a header may be written differently
    rows: list[np.ndarray] = []
    for index, (number, line) in enumerate(lines):
        cells = [cell.strip() for cell in line.split(delimiter)]
        try:
            rows.append(np.array(cells, dtype=np.float64))
        except ValueError:
            if index == 0:
                continue  # a header row of column names
            # Quote the line only from a file that is evidently a table of numbers: a project may
            # name any readable file, and its second line must not end up on the screen.
            shown = f"{line.strip()[:60]!r} is" if rows and path.suffix.lower() in TABLE_SUFFIXES else "is"
            raise DataError(f"{path.name}, line {number}: {shown} not all numbers") from None
        if len(rows[-1]) != len(rows[0]):
            raise DataError(f"{path.name}, line {number}: has {len(rows[-1])} values but the first row has "
                            f"{len(rows[0])}; every row needs the same number")
    if not rows:
        raise DataError(f"{path.name}: has a header but no rows of numbers")
    table = np.stack(rows)
    del rows
    columns = table.shape[1]
    if columns < 2:
        raise DataError(f"{path.name}: needs at least one feature column and a label column")
    if not -columns <= label_column < columns:
        raise DataError(f"{path.name}: label column {label_column} does not exist; the rows have {columns} columns "
                        f"(0 is the first, -1 the last)")
    label_index = label_column % columns
    y = _check_labels(table[:, label_index], task, f"{path.name} (label column {label_index})")
    x = _check_samples(np.delete(table, label_index, axis=1), path.name)
    names, warnings = [], []
    if task == "classification":
        (y,), names, warnings = _number_classes([y], f"{path.name} (label column {label_index})")
        if len(names) > max(20, len(y) // 5):
            warnings.append(f"{path.name}: the label column {label_index} holds {len(names)} different values "
                            f"for {len(y)} rows; if it holds measurements, not classes, choose Regression")
    return Dataset(path.stem, x, y, task, names, description=f"rows of {path.name}",
                   meta={"source": str(path), "warnings": warnings})


# ----------------------------------------------------------------------------- images
def _load_images(path: Path, task: str, resize=None, grey: bool = False) -> Dataset:
    """One subfolder per class (sorted names are labels 0, 1, ...), images inside as (C, H, W) 0..1."""
    import cv2

    if task != "classification":
        raise DataError(f"{path.name}: a folder of images gives classes (one subfolder each); "
                        "regression needs an .npz or a .csv")
    if resize is not None:
        if isinstance(resize, (str, bytes)) or not hasattr(resize, "__len__") or len(resize) != 2:
            raise DataError(f"resize must be (height, width) in pixels, not {resize!r}")
        height, width = (whole_number(path.name, "resize", v, 1, 4096) for v in resize)
    grey = flag(path.name, "grey", grey)
    classes = _class_folders(path)
    if len(classes) < 2:
        raise DataError(f"{path.name}: needs one subfolder per class and at least two classes; "
                        f"found {len(classes)}")
    images: list[np.ndarray] = []
    labels: list[int] = []
    values = 0
    for label, class_folder in enumerate(classes):
        files = regular_files_in(class_folder, IMAGE_SUFFIXES)
        if not files:
            if _count_files([class_folder], _video_suffixes()):
                raise DataError(f"class folder {class_folder.name!r} holds videos, not images; choose {path.name} "
                                "as a video folder")
            raise DataError(f"class folder {class_folder.name!r} holds no images; add some or remove the folder")
        if len(images) + len(files) > MAX_IMAGES:
            raise DataError(f"{path.name}: holds more than {MAX_IMAGES:,} images; GateScope reads fewer")
        for file in files:
            regular_file(file, f"the image {class_folder.name}/{file.name}", MAX_IMAGE_BYTES)
            images.append(_read_image(file, class_folder.name, grey))
            labels.append(label)
            values += images[-1].size
            if values > MAX_SAMPLE_VALUES:
                raise DataError(f"{path.name}: its images take more than {size_text(4 * MAX_SAMPLE_VALUES)} as "
                                "float32, more than GateScope holds; pass a smaller resize or use fewer images")
    channels = {img.shape[2] for img in images}
    if len(channels) > 1:
        # Mixed grey and colour: grey images become three equal channels.
        images = [np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img for img in images]
    if resize is not None:
        images = [_resize(img, height, width, cv2) for img in images]
    sizes = {img.shape[:2] for img in images}
    if len(sizes) > 1:
        listed = ", ".join(f"{h}x{w}" for h, w in sorted(sizes)[:4])
        raise DataError(f"{path.name}: the images have different sizes ({listed}); set 'Resize to' a height "
                        "and width (resize=[H, W]) to resize them all to one size")
    x = np.stack(images).transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    return Dataset(path.name, np.ascontiguousarray(x, dtype=np.float32), np.array(labels, dtype=np.int64),
                   "classification", [c.name for c in classes], description=f"images from {path.name}",
                   meta={"source": str(path)})


# ----------------------------------------------------------------------------- videos
def _load_videos(path: Path, task: str, frames: int = 8, stride: int = 0, size=16, grey: bool = True) -> Dataset:
    """Clips ``(N, frames, C, H, W)`` in 0..1 from a folder of class subfolders of videos
    (``compute.datasets.video.video_folder``, which decodes and caches them)."""
    from gatescope.compute.datasets.video import video_folder

    if task != "classification":
        raise DataError(f"{path.name}: a folder of videos gives classes (one subfolder each); "
                        "regression needs an .npz or a table")
    try:
        frames, stride = int(frames), int(stride)
    except (TypeError, ValueError):
        raise DataError(f"frames and stride must be whole numbers, not {frames!r} and {stride!r}") from None
    dataset = video_folder(str(path), frames=frames, size=size, channels=1 if grey else 3, stride=stride,
                           normalize="unit")
    dataset.meta["source"] = str(path)
    return dataset


def _read_image(file: Path, class_name: str, grey: bool) -> np.ndarray:
    """One image as float32 (H, W, C) in 0..1, colour in RGB order; DataError naming the file."""
    import cv2

    try:
        raw = np.fromfile(str(file), dtype=np.uint8)  # works for any path, unlike cv2.imread on Windows
        image = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    except (OSError, cv2.error):
        image = None
    if image is None:
        raise DataError(f"cannot read the image {class_name}/{file.name}; it may be damaged or not an image")
    if image.dtype == np.uint8:
        scale = 255.0
    elif image.dtype == np.uint16:
        scale = 65535.0
    elif np.issubdtype(image.dtype, np.floating):
        scale = 1.0
    else:
        raise DataError(f"the image {class_name}/{file.name} has {image.dtype} pixels, which are not supported")
    image = image.astype(np.float32) / scale
    if image.ndim == 2:
        image = image[:, :, None]
    elif image.shape[2] == 4:
        image = image[:, :, :3]  # the alpha channel is dropped
    if image.shape[2] == 3:
        image = image[:, :, ::-1]  # OpenCV reads BGR
        if grey:
            image = (image @ np.array([0.299, 0.587, 0.114], np.float32))[:, :, None]
    if not np.isfinite(image).all():
        raise DataError(f"the image {class_name}/{file.name} holds NaN or Inf values")
    return np.ascontiguousarray(image)


def _resize(image: np.ndarray, height: int, width: int, cv2) -> np.ndarray:
    out = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return out[:, :, None] if out.ndim == 2 else out
