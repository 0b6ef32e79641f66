"""The one plugin manager, and finding backends in it.

`get_plugin_manager()` holds core's defaults and every installed `tandem.plugins` entry point.
Backends are entry points of the `tandem.backends` group, named after the backend; `load_backend`
imports only the one asked for.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata

import pluggy

from core.backends.base import Availability, Backend
from core.errors import TandemError
from core.plugins import hookspecs

PLUGIN_GROUP = "tandem.plugins"
BACKEND_GROUP = "tandem.backends"
CORE_BACKENDS = {"cpu": "core.backends.cpu"}  # core's own, listed like an entry point


@functools.cache
def get_plugin_manager() -> pluggy.PluginManager:
    """Build the plugin manager once per process.

    Entry points that fail to import are reported by name instead of killing the program with a
    traceback from somebody else's package.
    """
    from core.agent import builtin_tools
    from core.data import synthetic
    from core.rewards import builtin as builtin_rewards

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(builtin_rewards, name="core.rewards")
    pm.register(synthetic, name="core.synthetic")
    pm.register(builtin_tools, name="core.tools")
    for ep in importlib.metadata.entry_points(group=PLUGIN_GROUP):
        if not pm.has_plugin(ep.name):
            pm.register(_load(ep.name, ep.value, ep.load), name=ep.name)
    return pm


def _load(name: str, value: str, load):
    try:
        return load()
    except Exception as exc:  # a broken third-party plugin must not take the CLI down
        raise TandemError(f"plugin '{name}' ({value}) failed to import: {exc}") from exc


def backend_entry_points() -> dict[str, str]:
    """Installed backend name -> its plugin module, without importing any."""
    found = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=BACKEND_GROUP)}
    return {**found, **CORE_BACKENDS}


def backend_from_argv(argv: list[str]) -> str | None:
    """The NAME of a `+backend=NAME` / `backend=NAME` / `++backend=NAME` override (or `--backend NAME`)."""
    for i, arg in enumerate(argv):
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+~") == "backend":
            return value
        if arg == "--backend" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def load_backend(name: str) -> Backend:
    """The backend called `name`: its entry point is imported and registered on first use."""
    pm = get_plugin_manager()
    modules = backend_entry_points()
    plugin_name = f"backend.{name}"
    if name in modules and not pm.has_plugin(plugin_name):
        pm.register(_load(name, modules[name], lambda: importlib.import_module(modules[name])), name=plugin_name)
    backend = pm.hook.tandem_backend(name=name)
    if backend is None:
        raise TandemError(f"unknown backend '{name}'; installed backends: {', '.join(sorted(modules))}")
    return backend


def installed_backends() -> list[Backend]:
    """Every installed backend (each imported), from the highest priority down."""
    return sorted((load_backend(name) for name in backend_entry_points()), key=lambda b: -b.priority)


def probe(backend: Backend) -> Availability:
    try:
        return backend.probe()
    except Exception as exc:  # a probe must not raise; one that does is reported, not propagated
        return Availability(False, f"its probe failed: {type(exc).__name__}: {exc}")


def detect_backend() -> Backend:
    """The available backend with the highest priority (rocm > cuda > cpu for the built-ins)."""
    for backend in installed_backends():
        if probe(backend).available:
            return backend
    raise TandemError("no installed backend is available on this machine")


def require_backend(name: str) -> tuple[Backend, Availability]:
    """The backend `name`, checked to be usable here, or one line saying why not."""
    backend = load_backend(name)
    availability = probe(backend)
    if not availability.available:
        raise TandemError(f"backend '{name}' cannot run here: {availability.reason}")
    return backend, availability
