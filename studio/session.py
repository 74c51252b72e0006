"""Qt-free glue between a project and the engine: its dataset, its model on a device."""
from __future__ import annotations

from pathlib import Path

from gatescope.compute.datasets import Dataset, load
from gatescope.studio.project import Project


def dataset_reference(project: Project) -> dict:
    """The project's dataset reference with a relative file path resolved against the project's folder."""
    ref = dict(project.dataset)
    if project.path is None:
        return ref
    if ref.get("kind") == "file" and isinstance(ref.get("path"), str):
        ref["path"] = _resolve(project, ref["path"])
    params = ref.get("params")
    if isinstance(params, dict) and isinstance(params.get("folder"), str):  # sources reading a folder
        ref["params"] = {**params, "folder": _resolve(project, params["folder"])}
    return ref  # anything else is for compute.datasets.load to check and refuse in words


def _resolve(project: Project, path: str) -> str:
    return path if Path(path).is_absolute() else str(project.path.parent / path)


def portable_reference(project: Project, path: str | Path) -> dict:
    """The project's dataset reference as a project file written to ``path`` should hold it: a
    data path inside the folder of ``path`` (the file beside the project, or in a folder below
    it) relative to that folder, so the folder can move to another machine whole; any other
    path absolute. Relative paths are read against the project's present file first, so a
    project saved under a new name elsewhere still finds its data."""
    ref = dataset_reference(project) if project.path is not None else dict(project.dataset)
    folder = Path(path).resolve().parent

    def portable(value: str) -> str:
        target = Path(value)
        if not target.is_absolute():
            return value        # an untitled project's relative path: nothing to read it against
        try:
            return Path(target.resolve()).relative_to(folder).as_posix()
        except ValueError:
            return str(target)

    if ref.get("kind") == "file" and isinstance(ref.get("path"), str):
        ref["path"] = portable(ref["path"])
    params = dict(ref.get("params") or {})
    if isinstance(params.get("folder"), str):
        params["folder"] = portable(params["folder"])
        ref["params"] = params
    return ref


def file_reference(path: str | Path, options: dict | None = None) -> dict:
    """The reference to a person's own data at ``path`` (made absolute) with its loader
    ``options``, its format detected (``compute.datasets.files.detect_format``; DataError when
    it is none that GateScope reads). Options left at None are left out."""
    from gatescope.compute.datasets.files import detect_format
    path = Path(path).expanduser().resolve()
    params = {k: v for k, v in (options or {}).items() if v is not None}
    return {"kind": "file", "path": str(path), "format": detect_format(path), "params": params}


def load_dataset(project: Project) -> Dataset:
    """The dataset the project names; DataError with a clear message if it cannot be had."""
    return load(dataset_reference(project))
