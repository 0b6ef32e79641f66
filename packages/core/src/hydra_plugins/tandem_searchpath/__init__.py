"""Adds the selected backend's config directory to Hydra's search path.

A third-party backend whose `Backend.config_searchpath` is "pkg://its_pkg.conf" ships its own
`backend/NAME.yaml` there, and `+backend=NAME` finds it: pluggy decides which package takes part,
Hydra composes its values. `core.main` puts `+backend=NAME` on the command line before Hydra runs,
so only that backend is imported here.
"""

import sys

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class TandemSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from core.errors import TandemError
        from core.plugins.manager import backend_from_argv, load_backend

        name = backend_from_argv(sys.argv[1:])
        if name is None:
            return
        try:
            entry = load_backend(name).config_searchpath
        except TandemError:  # an unknown or broken backend is reported by core.main, not inside Hydra
            return
        if entry:
            search_path.append(provider="tandem-backend", path=entry)
