"""Adds installed Tandem plugins' config directories to Hydra's search path.

A third-party backend that answers `tandem_config_searchpath` with "pkg://its_pkg.conf" can ship its
own `backend/NAME.yaml` there, and `+backend=NAME` finds it: pluggy decides which packages take part,
Hydra composes their values.
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class TandemSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from core.errors import TandemError
        from core.plugins.manager import get_plugin_manager

        try:
            entries = get_plugin_manager().hook.tandem_config_searchpath()
        except TandemError:  # a broken plugin is reported by core.main, not inside Hydra
            return
        for entry in entries:
            if entry:
                search_path.append(provider="tandem-plugin", path=entry)
