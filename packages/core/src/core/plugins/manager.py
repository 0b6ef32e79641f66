"""The one plugin manager: core's defaults plus every installed `tandem.plugins` entry point."""

from __future__ import annotations

import functools
import importlib.metadata

import pluggy

from core.errors import TandemError
from core.plugins import hookspecs
from core.plugins.hookspecs import Availability, BackendSpec

ENTRY_POINT_GROUP = "tandem.plugins"


@functools.cache
def get_plugin_manager() -> pluggy.PluginManager:
    """Build the plugin manager once per process.

    Entry points that fail to import are reported by name instead of killing the program with a
    traceback from somebody else's package.
    """
    from core.backends import cpu
    from core.data import synthetic
    from core.rewards import builtin as builtin_rewards

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    # core's own defaults are plugins like any other: the cpu backend and the built-in rewards
    pm.register(cpu, name="core.cpu")
    pm.register(builtin_rewards, name="core.rewards")
    pm.register(synthetic, name="core.synthetic")
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if pm.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken third-party plugin must not take the CLI down
            raise TandemError(f"plugin '{ep.name}' ({ep.value}) failed to import: {exc}") from exc
        pm.register(plugin, name=ep.name)
    return pm


def installed_backends(pm: pluggy.PluginManager) -> dict[str, BackendSpec]:
    specs = [spec for answer in pm.hook.tandem_backends() for spec in answer]
    return {spec.name: spec for spec in sorted(specs, key=lambda s: -s.priority)}


def probe(pm: pluggy.PluginManager, backend: str) -> Availability:
    answer = pm.hook.tandem_probe(backend=backend)
    return answer if answer is not None else Availability(False, f"no plugin answers the probe for '{backend}'")


def detect_backend(pm: pluggy.PluginManager) -> str:
    """The available backend with the highest priority (rocm > cuda > cpu for the built-ins)."""
    for name in installed_backends(pm):
        if probe(pm, name).available:
            return name
    raise TandemError("no installed backend is available on this machine")


def require_backend(pm: pluggy.PluginManager, name: str) -> Availability:
    """Check that `name` is installed and usable here, or explain why not."""
    backends = installed_backends(pm)
    if name not in backends:
        raise TandemError(f"unknown backend '{name}'; installed backends: {', '.join(backends)}")
    availability = probe(pm, name)
    if not availability.available:
        raise TandemError(f"backend '{name}' is not available here: {availability.reason}")
    return availability
