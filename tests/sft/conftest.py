"""SFT fixtures; the helpers live in sft_fakes.py (a module name no other test folder uses)."""

from __future__ import annotations

import faulthandler
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # test modules and spawned ranks import sft_fakes
from sft_fakes import FakeBackendPlugin  # noqa: E402

faulthandler.enable()


@pytest.fixture
def fake_backend():
    from core.plugins.manager import get_plugin_manager

    pm = get_plugin_manager()
    plugin = FakeBackendPlugin()
    pm.register(plugin, name="test-fake-backend")
    try:
        yield plugin
    finally:
        pm.unregister(name="test-fake-backend")
