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
    if ref.get("kind") == "file":
        ref["path"] = _resolve(project, ref.get("path", ""))
    params = dict(ref.get("params") or {})
    if isinstance(params.get("folder"), str):  # builtin sources that read a folder (video-folder)
        params["folder"] = _resolve(project, params["folder"])
        ref["params"] = params
    return ref


def _resolve(project: Project, path: str) -> str:
    return path if Path(path).is_absolute() else str(project.path.parent / path)


def load_dataset(project: Project) -> Dataset:
    """The dataset the project names; DataError with a clear message if it cannot be had."""
    return load(dataset_reference(project))
