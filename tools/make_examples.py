"""Write the bundled example projects (untrained) to assets/examples/.

    .venv/bin/python tools/make_examples.py [NAME ...]

Each recipe lives in tools/examples/*.py; the files it writes are what File > Open Example
and ``gatescope train assets/examples/NAME.gscope`` use.
"""
import importlib
import pkgutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gatescope.assets import EXAMPLES  # noqa: E402
from gatescope.studio.project import save_project  # noqa: E402
import tools.examples  # noqa: E402


def recipes() -> dict:
    found = {}
    for info in pkgutil.iter_modules(tools.examples.__path__):
        module = importlib.import_module(f"tools.examples.{info.name}")
        found.update(getattr(module, "EXAMPLES", {}))
    return found


def main(names: list[str]) -> int:
    available = recipes()
    unknown = sorted(set(names) - set(available))
    if unknown:
        print(f"no recipe for {', '.join(unknown)}; have {', '.join(sorted(available))}", file=sys.stderr)
        return 2
    EXAMPLES.mkdir(parents=True, exist_ok=True)
    for name in names or sorted(available):
        path = save_project(available[name](), EXAMPLES / f"{name}.gscope")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
