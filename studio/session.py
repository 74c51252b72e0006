"""Qt-free glue between a project and the engine: its dataset, its model on a device."""
from __future__ import annotations

from pathlib import Path

from compute.datasets import Dataset, load
from studio.project import Project


def dataset_reference(project: Project) -> dict:
    """The project's dataset reference with a relative file path resolved against the project's folder."""
    ref = dict(project.dataset)
    if ref.get("kind") == "file" and project.path is not None:
        path = Path(ref.get("path", ""))
        if not path.is_absolute():
            ref["path"] = str(project.path.parent / path)
    return ref


def load_dataset(project: Project) -> Dataset:
    """The dataset the project names; DataError with a clear message if it cannot be had."""
    return load(dataset_reference(project))
