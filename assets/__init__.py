"""Icons, example projects and small bundled datasets, shipped as package data."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent
EXAMPLES = ROOT / "examples"
DATA = ROOT / "data"


def example_path(name: str) -> Path:
    """The bundled example ``name`` (with or without ``.gscope``)."""
    return EXAMPLES / (name if name.endswith(".gscope") else f"{name}.gscope")


def example_names() -> list[str]:
    """Bundled example projects, by file stem, sorted."""
    return sorted(p.stem for p in EXAMPLES.glob("*.gscope"))
