"""Fakes for the ROCm backend tests: a torch that looks like a CUDA, HIP or CPU build, and vLLM."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch


@dataclass
class FakePlatform:
    """Stands in for `vllm.platforms.current_platform`."""

    rocm: bool = True
    sleep: bool = True

    def is_rocm(self) -> bool:
        return self.rocm

    def is_sleep_mode_available(self) -> bool:
        return self.sleep


@pytest.fixture
def torch_build(monkeypatch):
    """torch_build("hip" | "cuda" | "cpu", gpus=1): make torch report that build and GPU count."""

    def _set(kind: str, gpus: int = 1, name: str = "AMD Instinct MI300X") -> None:
        monkeypatch.setattr(torch.version, "hip", "6.4.43482" if kind == "hip" else None)
        monkeypatch.setattr(torch.version, "cuda", "12.8" if kind == "cuda" else None)
        # torch.cuda.is_available() is True on ROCm too: that is the trap the probes must avoid
        monkeypatch.setattr(torch.cuda, "is_available", lambda: kind != "cpu" and gpus > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus if kind != "cpu" else 0)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: name)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: (9, 0))

    return _set


@pytest.fixture
def fake_vllm(monkeypatch):
    """fake_vllm(version, rocm=True, sleep=True, cumem=True, platform_error=None): vLLM as the probes see it."""
    import sys
    import types

    import backend_rocm.probe
    import core.patches

    def _set(version: str | None, rocm: bool = True, sleep: bool = True, cumem: bool = True,
             platform_error: str | None = None):
        monkeypatch.setitem(sys.modules, "vllm.device_allocator.cumem", types.SimpleNamespace(cumem_available=cumem))
        monkeypatch.setattr(core.patches, "vllm_version", lambda: version)
        monkeypatch.setattr(backend_rocm.probe, "vllm_version", lambda: version)
        platform = FakePlatform(rocm, sleep)

        def current_platform():
            if platform_error:
                raise ImportError(platform_error)
            return platform

        monkeypatch.setattr(backend_rocm.probe, "vllm_platform", current_platform)
        return platform

    return _set


@pytest.fixture
def sleep_support(monkeypatch):
    """sleep_support(available, reason): fix the sleep-mode probe's answer for this test."""
    from backend_rocm import sleep_mode
    from backend_rocm.probe import SleepSupport

    def _set(available: bool, reason: str = "faked") -> None:
        monkeypatch.setattr(sleep_mode, "sleep_support", lambda verify_cycle: SleepSupport(available, reason))

    return _set
