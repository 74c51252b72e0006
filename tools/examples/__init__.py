"""Recipes of the bundled example projects: each module has ``EXAMPLES``, a dict of
file stem -> function returning a ``studio.project.Project``. ``tools/make_examples.py``
writes them to ``assets/examples/``."""
