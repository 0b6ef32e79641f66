"""Plugin discovery: installed backends through entry points, fake backends from fixtures, selection."""

from __future__ import annotations

import sys
import types

import pytest

from core.backends.base import Availability, Backend, BaseBackend
from core.errors import TandemError
from core.plugins import manager
from core.plugins.hookspecs import hookimpl
from core.plugins.manager import detect_backend, get_plugin_manager, installed_backends, load_backend, require_backend


def test_installed_backends_are_discovered_through_entry_points():
    assert {"cpu", "cuda", "rocm"} <= set(manager.backend_entry_points())
    assert [b.name for b in installed_backends()][:3] == ["rocm", "cuda", "cpu"]  # by priority


def test_only_the_selected_backend_is_imported(monkeypatch):
    get_plugin_manager.cache_clear()
    for module in [m for m in sys.modules if m.startswith(("backend_cuda", "backend_rocm"))]:
        monkeypatch.delitem(sys.modules, module)
    try:
        load_backend("cuda")
        assert "backend_cuda.backend" in sys.modules and "backend_rocm.backend" not in sys.modules
    finally:
        get_plugin_manager.cache_clear()


def test_probes_answer_honestly_on_this_cpu_machine():
    assert load_backend("cpu").probe().available
    for gpu_backend in ("cuda", "rocm"):
        answer = load_backend(gpu_backend).probe()
        assert not answer.available and answer.reason


def test_detection_falls_back_to_cpu_here():
    assert detect_backend().name == "cpu"


@pytest.fixture
def fake_backend(monkeypatch):
    """fake_backend(name, priority, available): a backend installed for one test, as an entry point would."""
    installed = dict(manager.backend_entry_points())

    def install(name: str, priority: int, available: bool, searchpath: str | None = None):
        backend_class = type(f"{name}Backend", (BaseBackend,), dict(
            name=name, priority=priority, config_searchpath=searchpath,
            probe=lambda self: Availability(available, "fake says so"),
        ))
        module = types.ModuleType(f"fake_backend_{name}")
        module.tandem_backend = hookimpl(lambda name: backend_class() if name == backend_class.name else None)
        monkeypatch.setitem(sys.modules, module.__name__, module)
        installed[name] = module.__name__
        return backend_class

    monkeypatch.setattr(manager, "backend_entry_points", lambda: dict(installed))
    yield install
    pm = get_plugin_manager()
    for name in installed:
        if name not in ("cpu", "cuda", "rocm") and pm.has_plugin(f"backend.{name}"):
            pm.unregister(name=f"backend.{name}")


def test_fake_backend_is_listed_and_wins_detection_by_priority(fake_backend):
    fake_backend("turbo", priority=100, available=True)
    assert "turbo" in [b.name for b in installed_backends()]
    assert detect_backend().name == "turbo"


def test_unavailable_backend_is_skipped_by_detection(fake_backend):
    fake_backend("broken", priority=100, available=False)
    assert detect_backend().name == "cpu"


def test_require_backend_names_installed_ones_and_the_reason():
    with pytest.raises(TandemError, match="unknown backend 'nope'; installed backends: .*cpu"):
        require_backend("nope")
    with pytest.raises(TandemError, match="backend 'rocm' cannot run here: .*HIP"):
        require_backend("rocm")


def test_a_probe_that_raises_is_reported_not_raised(fake_backend):
    backend_class = fake_backend("flaky", priority=100, available=True)
    backend_class.probe = lambda self: 1 / 0
    assert "ZeroDivisionError" in manager.probe(load_backend("flaky")).reason
    assert detect_backend().name == "cpu"


def test_third_party_backend_config_found_through_its_searchpath(fake_backend, tmp_path, compose_config, monkeypatch):
    (tmp_path / "backend").mkdir()
    (tmp_path / "backend" / "turbo.yaml").write_text("name: turbo\nengine: hf\nsettings:\n  warp: 9\n")
    fake_backend("turbo", priority=1, available=True, searchpath=f"file://{tmp_path}")
    monkeypatch.setattr(sys, "argv", ["core.main", "+backend=turbo"])  # what core.main hands Hydra
    cfg = compose_config("+backend=turbo")
    assert cfg.backend.name == "turbo" and cfg.backend.settings.warp == 9


def test_every_installed_backend_keeps_the_protocol():
    for backend in installed_backends():
        assert isinstance(backend, Backend), backend.name


@pytest.mark.parametrize("backend, override, message", [
    ("rocm", "+backend.settings.sleep_falback=rebuild", "backend.settings.sleep_falback: not a setting of backend rocm"),
    ("rocm", "backend.settings.verify_sleep_cycle=maybe", "backend.settings.verify_sleep_cycle: Value 'maybe'"),
    ("cuda", "backend.settings.weight_bucket_mb=abc", "backend.settings.weight_bucket_mb: Value 'abc'"),
    ("cpu", "+backend.settings.weight_bucket_mb=64", None),
])
def test_backend_settings_are_checked_against_the_backends_schema(compose_config, backend, override, message):
    from core.config.backend_settings import check_backend_settings

    cfg = compose_config(f"+backend={backend}", override)
    if message is None:
        check_backend_settings(cfg, load_backend(backend))
        assert cfg.backend.settings.weight_bucket_mb == 64
        return
    with pytest.raises(TandemError, match=message.replace("(", r"\(")):
        check_backend_settings(cfg, load_backend(backend))
