"""A third-party backend as an outside package would write one, for the tests: "fake XPU".

It runs on the CPU (there is no XPU here) but goes through every door a real one would: its own
entry point, its own config group file, its own settings schema, its own engine construction.
Nothing in core knows its name.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from core.backends.base import Availability, BaseBackend, VllmSettings
from core.plugins.hookspecs import hookimpl

log = logging.getLogger("tandem")


@dataclass
class FakeXpuSettings(VllmSettings):
    tiles: int = 2  # a knob only this backend has


class FakeXpuBackend(BaseBackend):
    name = "fake_xpu"
    priority = -10  # never preferred over a real backend
    description = "a test double for a third-party accelerator backend"
    settings_schema = FakeXpuSettings
    config_searchpath = "pkg://fake_xpu.conf"

    def probe(self) -> Availability:
        return Availability(True, "fake XPU with 2 tiles")

    def make_rollout_engine(self, cfg, target):
        log.info("fake_xpu engine: tiles=%d", cfg.backend.settings.tiles)
        return super().make_rollout_engine(cfg, target)


@hookimpl
def tandem_backend(name: str):
    return FakeXpuBackend() if name == FakeXpuBackend.name else None
