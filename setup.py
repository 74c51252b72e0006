"""The one thing pyproject.toml cannot say: install the repository's top-level packages under
the project's own name.

The repository keeps ``compute/``, ``widgets/``, ``studio/`` and ``assets/`` at its top (DESIGN
section 1); installed, they are ``gatescope.compute`` and so on, inside the namespace package
``gatescope``, so they never collide with another project's ``studio`` or a notebook's
``assets`` folder.
"""
from setuptools import find_namespace_packages, find_packages, setup

TOP_LEVEL = ("compute", "widgets", "studio", "assets")

# assets/data and assets/examples hold no Python: they are data folders, listed as namespace
# packages so that their files are package data (pyproject.toml's [tool.setuptools.package-data]).
CODE = find_packages(include=[f"{name}*" for name in TOP_LEVEL])
DATA = [p for p in find_namespace_packages(include=["assets.*"]) if "__pycache__" not in p]

setup(
    packages=[f"gatescope.{name}" for name in CODE + DATA],
    package_dir={f"gatescope.{name}": name for name in TOP_LEVEL},
)
