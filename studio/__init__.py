"""The GateScope application: project files, command line, controllers and the main window.

Modules here that have no reason to touch Qt (project files, the command line, dataset
references) do not import it, so ``gatescope train`` runs on a server with no display.
"""

__version__ = "0.1.0"
