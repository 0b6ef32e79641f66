"""Availability of the ROCm and CUDA backends on CUDA, HIP and CPU builds of torch (all faked)."""

from __future__ import annotations

import pytest

from backend_rocm.probe import SleepSupport, probe_rocm, sleep_cycle_frees_memory, sleep_mode_support
from core.plugins.manager import load_backend, probe


def answers(name: str):
    return probe(load_backend(name))


def test_hip_build_with_rocm_vllm_is_rocm_and_not_cuda(torch_build, fake_vllm):
    torch_build("hip")
    fake_vllm("0.11.1+rocm700")
    rocm, cuda = answers("rocm"), answers("cuda")
    assert rocm.available, rocm.reason
    assert rocm.reason.startswith("AMD Instinct MI300X, vLLM 0.11.1+rocm700, sleep mode: yes")
    assert not cuda.available and "ROCm (HIP) build" in cuda.reason


def test_cuda_build_is_cuda_and_not_rocm(torch_build, fake_vllm):
    torch_build("cuda", name="NVIDIA H100")
    fake_vllm("0.27.0", rocm=False)
    rocm, cuda = answers("rocm"), answers("cuda")
    assert cuda.available, cuda.reason
    assert not rocm.available and rocm.reason.endswith("is a CUDA 12.8 build, not a ROCm (HIP) build")


def test_cpu_build_runs_neither(torch_build, fake_vllm):
    torch_build("cpu")
    fake_vllm(None)
    assert "a CPU-only build, not a ROCm (HIP) build" in answers("rocm").reason
    assert "CPU-only build" in answers("cuda").reason
    assert not answers("rocm").available and not answers("cuda").available


@pytest.mark.parametrize(
    "gpus, version, vllm_kwargs, reason",
    [
        (0, "0.11.1", {}, "no AMD GPU is visible"),
        (1, None, {}, "vLLM is not installed"),
        (1, "0.11.1", {"rocm": False}, "vLLM 0.11.1 is not a ROCm build"),
        (1, "0.11.1", {"platform_error": "libamdhip64.so: cannot open"}, "failed to load: libamdhip64.so"),
    ],
)
def test_rocm_says_why_not(torch_build, fake_vllm, gpus, version, vllm_kwargs, reason):
    torch_build("hip", gpus=gpus)
    fake_vllm(version, **vllm_kwargs)
    availability = probe_rocm()
    assert not availability.available
    assert reason in availability.reason


def test_old_rocm_vllm_is_available_without_sleep_mode(torch_build, fake_vllm):
    torch_build("hip")
    fake_vllm("0.8.5+rocm634", sleep=False)
    availability = probe_rocm()
    assert availability.available
    assert "sleep mode: no: this vLLM build reports no sleep mode on ROCm" in availability.reason


@pytest.mark.parametrize("available", [True, False])
def test_sleep_mode_needs_the_cumem_extension(fake_vllm, available):
    fake_vllm("0.11.1", cumem=available)
    assert sleep_mode_support() == SleepSupport(
        available, "cumem allocator loads" if available else "this vLLM build has no cumem_allocator extension")


class FakeAllocator:
    """vLLM's CuMemAllocator as seen by the sleep/wake check: `freed` bytes come back on sleep."""

    def __init__(self, memory: dict, freed: int, fail: bool = False):
        self.memory, self.freed, self.fail = memory, freed, fail

    def use_memory_pool(self, tag):
        import contextlib

        return contextlib.nullcontext()

    def sleep(self, offload_tags=()):
        if self.fail:
            raise RuntimeError("hipMemUnmap failed")
        self.memory["free"] += self.freed

    def wake_up(self, tags=None):
        self.memory["free"] -= self.freed


@pytest.mark.parametrize(
    "freed, fail, expected",
    [
        (64 << 20, False, SleepSupport(True, "a sleep/wake cycle freed 64 MiB")),
        (0, False, SleepSupport(False, "sleep() freed 0 MiB of a 64 MiB allocation")),
        (0, True, SleepSupport(False, "a sleep/wake cycle failed: hipMemUnmap failed")),
    ],
)
def test_sleep_cycle_check(freed, fail, expected):
    memory = {"free": 1 << 30}
    allocator = FakeAllocator(memory, freed, fail)
    result = sleep_cycle_frees_memory(allocator, lambda: (memory["free"], 2 << 30), lambda n: bytearray(1))
    assert result == expected
