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


def load_dataset(project: Project) -> Dataset:
    """The dataset the project names; DataError with a clear message if it cannot be had."""
    return load(dataset_reference(project))
