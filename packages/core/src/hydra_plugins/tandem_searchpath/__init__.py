"""Adds backends' config directories to Hydra's search path.

A backend whose `Backend.config_searchpath` is "pkg://its_pkg.conf" ships its own `backend/NAME.yaml`
there (cuda and rocm do), and `+backend=NAME` finds it: pluggy decides which package takes part, Hydra
composes its values. `core.main` puts `+backend=NAME` on the command line before Hydra runs, so only
that backend is imported here; without one (Hydra's compose API) every installed backend is.
"""

import sys

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class TandemSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from core.errors import TandemError
        from core.plugins.manager import backend_entry_points, backend_from_argv, load_backend

        name = backend_from_argv(sys.argv[1:])
        for backend in [name] if name else sorted(backend_entry_points()):
            try:
                entry = load_backend(backend).config_searchpath
            except TandemError:  # an unknown or broken backend is reported by core.main, not inside Hydra
                continue
            if entry:
                search_path.append(provider="tandem-backend", path=entry)
