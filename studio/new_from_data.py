"""File > New from Data…: the dialog's controller (what ``gatescope new`` does, in the window).

The data is read on a worker (``studio.data_control.DataController``, its own one, so the
project's dataset is untouched until the new project opens); what was found and the templates
that fit it come from ``studio.templates``, the same code the command line uses. Create asks
where to save (beside the data by default), writes the project there (a data path inside that
folder is written relative to it) and opens it as File > Open does.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject

from gatescope.compute.datasets import Dataset
from gatescope.compute.datasets.files import LOADER_OPTIONS, detect_format
from gatescope.studio import templates
from gatescope.studio.data_control import DataController
from gatescope.studio.project import SUFFIX, ProjectError, save_project
from gatescope.studio.session import portable_reference
from gatescope.widgets.new_from_data import NewFromDataDialog


class NewFromData(QObject):
    """Joins a ``NewFromDataDialog`` to a data loader and the window's files (see the module)."""

    def __init__(self, window, parent: QObject | None = None):
        super().__init__(parent or window)
        self.window = window
        self.dialog = NewFromDataDialog(window)
        self.dialog.data.set_formats(LOADER_OPTIONS, detect_format)
        self.loader = DataController(self)
        self.dataset: Dataset | None = None
        self.ref: dict | None = None
        self.dialog.data.datasetRequested.connect(self._choose)
        self.loader.busyChanged.connect(self.dialog.data.set_busy)
        self.loader.loaded.connect(self._on_loaded)
        self.loader.failed.connect(self._on_failed)
        self.dialog.templateChosen.connect(self._on_template)
        self.dialog.createRequested.connect(self.create)

    def show(self) -> None:
        self.dialog.show()
        self.dialog.raise_()

    def _choose(self, ref: dict) -> None:
        self.dataset = None
        self.dialog.set_ready(False, "Reading the data…")
        self.loader.choose(ref, ref)

    def _on_loaded(self, dataset: Dataset, ref: dict, _from_project: bool) -> None:
        self.dataset, self.ref = dataset, ref
        summary, samples, labels = self._view(dataset)
        self.dialog.data.show_dataset(summary, samples, labels)
        self.dialog.set_found(templates.describe(dataset))
        kind = templates.data_kind(dataset.sample_shape)
        fitting = templates.templates_for(kind)
        if not fitting:
            self.dialog.set_templates([], None)
            self.dialog.set_ready(False, f"No template takes {kind}s; build the model in the Build view.")
            return
        choices = [(name, templates.TEMPLATES[name].summary) for name in fitting]
        self.dialog.set_templates(choices, templates.DEFAULTS.get(kind, fitting[0]))
        self._on_template(self.dialog.template.currentText())

    @staticmethod
    def _view(dataset: Dataset):
        """The data panel's view, with the split the new project's settings will make."""
        from gatescope.compute.train import dataset_split
        from gatescope.studio.palette_data import dataset_view
        settings = templates.training_settings(dataset, templates.choose(dataset)) \
            if templates.templates_for(templates.data_kind(dataset.sample_shape)) else None
        if settings is None:
            return dataset_view(dataset, len(dataset.x), 0, 0)
        split = dataset_split(dataset, settings.val_fraction, settings.test_fraction, settings.seed)
        n_test = len(dataset.x_test) if dataset.x_test is not None else len(split.test)
        return dataset_view(dataset, len(split.train), len(split.val), n_test)

    def _on_failed(self, message: str, ref: dict, _from_project: bool) -> None:
        self.dataset = None
        self.dialog.data.show_error(message)
        self.dialog.set_found([])
        self.dialog.set_ready(False, "Mend the options above and press Load, or choose other data.")

    def _on_template(self, name: str) -> None:
        if self.dataset is None:
            return
        try:
            template = templates.choose(self.dataset, name)
        except templates.TemplateError as exc:
            self.dialog.set_ready(False, str(exc))
            return
        s = templates.training_settings(self.dataset, template)
        self.dialog.set_settings(s.epochs, s.batch_size, s.learning_rate)
        self.dialog.set_ready(True)

    def suggested_path(self) -> str:
        """Beside the data: ``<folder of the data>/<its name>.gscope``."""
        source = Path(str((self.ref or {}).get("path", "data")))
        return str(source.parent / f"{source.stem or 'data'}{SUFFIX}")

    def create(self, choice: dict) -> bool:
        """Write the project where the person says and open it; False when it was not made."""
        if self.dataset is None or self.ref is None:
            return False
        path = self.window.dialogs.save_path(self.suggested_path())
        if not path:
            return False
        try:
            project = templates.new_project(self.dataset, self.ref, choice["template"], name=Path(path).stem,
                                            epochs=choice["epochs"], batch_size=choice["batch_size"],
                                            learning_rate=choice["learning_rate"])
            project.dataset = portable_reference(project, path)
            save_project(project, path)
        except (templates.TemplateError, ProjectError, ValueError) as exc:
            self.window.dialogs.error("New from Data", str(exc))
            return False
        if not self.window.open_path(path):
            return False
        self.dialog.accept()
        return True

    def shutdown(self) -> None:
        self.loader.shutdown()
