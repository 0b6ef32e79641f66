"""Plugin discovery: installed entry points, a fake plugin from a fixture, backend selection."""

from __future__ import annotations

import types

import pytest

from core.errors import TandemError
from core.plugins.hookspecs import Availability, BackendSpec, hookimpl
from core.plugins.manager import detect_backend, get_plugin_manager, installed_backends, probe, require_backend


def test_installed_backends_are_discovered_through_entry_points():
    pm = get_plugin_manager()
    assert {"cpu", "cuda", "rocm"} <= set(installed_backends(pm))
    assert pm.has_plugin("cuda") and pm.has_plugin("rocm")  # registered under their entry-point names


def test_probes_answer_honestly_on_this_cpu_machine():
    pm = get_plugin_manager()
    assert probe(pm, "cpu").available
    for gpu_backend in ("cuda", "rocm"):
        answer = probe(pm, gpu_backend)
        assert not answer.available and answer.reason


def test_detection_falls_back_to_cpu_here():
    assert detect_backend(get_plugin_manager()) == "cpu"


def make_fake_backend(name: str, priority: int, available: bool, searchpath: str | None = None):
    """A third-party backend as a plain module-like object, the way pluggy sees any plugin."""

    plugin = types.SimpleNamespace()

    @hookimpl
    def tandem_backends():
        return [BackendSpec(name, priority)]

    @hookimpl
    def tandem_probe(backend):
        return Availability(available, "fake says so") if backend == name else None

    @hookimpl
    def tandem_config_searchpath():
        return searchpath

    plugin.tandem_backends, plugin.tandem_probe, plugin.tandem_config_searchpath = (
        tandem_backends, tandem_probe, tandem_config_searchpath,
    )
    return plugin


@pytest.fixture
def fake_backend():
    """Register a fake backend for one test, and take it out again."""
    pm = get_plugin_manager()
    registered = []

    def _register(*args, **kwargs):
        plugin = make_fake_backend(*args, **kwargs)
        pm.register(plugin, name=f"fake-{args[0]}")
        registered.append(plugin)
        return plugin

    yield _register
    for plugin in registered:
        pm.unregister(plugin)


def test_fake_backend_is_listed_and_wins_detection_by_priority(fake_backend):
    fake_backend("turbo", priority=100, available=True)
    pm = get_plugin_manager()
    assert "turbo" in installed_backends(pm)
    assert detect_backend(pm) == "turbo"


def test_unavailable_backend_is_skipped_by_detection(fake_backend):
    fake_backend("broken", priority=100, available=False)
    assert detect_backend(get_plugin_manager()) == "cpu"


def test_require_backend_names_installed_ones_and_the_reason():
    pm = get_plugin_manager()
    with pytest.raises(TandemError, match="unknown backend 'nope'; installed backends: .*cpu"):
        require_backend(pm, "nope")
    with pytest.raises(TandemError, match="backend 'rocm' is not available here: .*HIP"):
        require_backend(pm, "rocm")


def test_third_party_backend_config_found_through_searchpath_hook(fake_backend, tmp_path, compose_config):
    (tmp_path / "backend").mkdir()
    (tmp_path / "backend" / "turbo.yaml").write_text("name: turbo\nengine: hf\nsettings:\n  warp: 9\n")
    fake_backend("turbo", priority=1, available=True, searchpath=f"file://{tmp_path}")
    cfg = compose_config("+backend=turbo")
    assert cfg.backend.name == "turbo" and cfg.backend.settings.warp == 9
