"""Can the ROCm backend run here, and can vLLM's sleep mode work on this build?

`torch.cuda.is_available()` is True on ROCm too, so only `torch.version.hip` tells a ROCm torch
from a CUDA one; vLLM's own answer (`current_platform.is_rocm()`) tells a ROCm vLLM build from a
CUDA or CPU one. Nothing here raises: every failure becomes a reason.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Any, Callable

from core.patches import vllm_version
from core.backends.base import Availability

log = logging.getLogger("tandem.rocm")

PROBE_BYTES = 64 << 20  # the sleep/wake check allocates this much under vLLM's allocator


def vllm_platform() -> Any:
    """vLLM's detected platform (imports vLLM; may raise)."""
    from vllm.platforms import current_platform

    return current_platform


def probe_rocm(platform: Callable[[], Any] | None = None) -> Availability:
    """The ROCm backend's availability: HIP torch, a visible GPU, a ROCm build of vLLM."""
    import torch

    details: dict[str, Any] = {"torch": torch.__version__, "torch.version.hip": torch.version.hip}
    if torch.version.hip is None:
        build = f"a CUDA {torch.version.cuda} build" if torch.version.cuda else "a CPU-only build"
        return Availability(False, f"torch {torch.__version__} is {build}, not a ROCm (HIP) build", details)
    if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
        return Availability(False, "no AMD GPU is visible (check HIP_VISIBLE_DEVICES and the amdgpu driver)",
                            details)
    details["gpu"] = torch.cuda.get_device_name(0)
    details["vllm"] = vllm_version()
    if details["vllm"] is None:
        return Availability(False, "vLLM is not installed: use AMD's ROCm vLLM wheel or rocm/vllm container",
                            details)
    try:
        is_rocm = bool((platform or vllm_platform)().is_rocm())
    except Exception as exc:  # a broken vLLM install must become a reason, not a traceback
        return Availability(False, f"vLLM {details['vllm']} failed to load: {exc}", details)
    if not is_rocm:
        return Availability(False, f"vLLM {details['vllm']} is not a ROCm build (its platform is not ROCm)",
                            details)
    sleep = sleep_mode_support(platform)
    details["sleep_mode"] = sleep.summary
    return Availability(True, f"{details['gpu']}, vLLM {details['vllm']}, sleep mode: {sleep.summary}", details)


@dataclass(frozen=True)
class SleepSupport:
    """Whether vLLM's sleep mode (cumem allocator offload) works with this vLLM build."""

    available: bool
    reason: str  # why not, or what was checked

    @property
    def summary(self) -> str:
        return ("yes: " if self.available else "no: ") + self.reason


def sleep_mode_support(platform: Callable[[], Any] | None = None) -> SleepSupport:
    """Static check: the build says it supports sleep mode and its cumem allocator loads.

    AMD's notes: ROCm sleep mode (first as the patched build of vllm-project/vllm#12695) is in vLLM
    releases after 0.11.0; older ROCm builds report no sleep mode for ROCm or ship no
    `cumem_allocator` extension.
    """
    try:
        current = (platform or vllm_platform)()
        if not current.is_sleep_mode_available():
            return SleepSupport(False, "this vLLM build reports no sleep mode on ROCm (needs vLLM > 0.11.0)")
        cumem = importlib.import_module("vllm.device_allocator.cumem")
    except Exception as exc:
        return SleepSupport(False, f"vLLM's cumem allocator does not load: {exc}")
    if not getattr(cumem, "cumem_available", False):
        return SleepSupport(False, "this vLLM build has no cumem_allocator extension")
    return SleepSupport(True, "cumem allocator loads")


def sleep_cycle_frees_memory(allocator: Any, mem_get_info: Callable[[], tuple[int, int]],
                             allocate: Callable[[int], Any], nbytes: int = PROBE_BYTES) -> SleepSupport:
    """Dynamic check: memory allocated under the cumem pool is returned by `sleep()`.

    `allocator` is vLLM's `CuMemAllocator.get_instance()`, `mem_get_info` is
    `torch.cuda.mem_get_info` and `allocate(n)` makes an n-byte GPU tensor; they are parameters so
    the logic is tested without a GPU.
    """
    tag = "tandem_sleep_probe"
    try:
        with allocator.use_memory_pool(tag=tag):
            tensor = allocate(nbytes)
        awake_free, _ = mem_get_info()
        allocator.sleep(offload_tags=())
        asleep_free, _ = mem_get_info()
        allocator.wake_up(tags=[tag])
        del tensor
    except Exception as exc:
        return SleepSupport(False, f"a sleep/wake cycle failed: {exc}")
    freed = asleep_free - awake_free
    if freed < nbytes // 2:
        return SleepSupport(False, f"sleep() freed {freed >> 20} MiB of a {nbytes >> 20} MiB allocation")
    return SleepSupport(True, f"a sleep/wake cycle freed {freed >> 20} MiB")


def verify_sleep_cycle() -> SleepSupport:
    """Run `sleep_cycle_frees_memory` on the real GPU (needs a ROCm GPU and vLLM)."""
    import torch
    from vllm.device_allocator.cumem import CuMemAllocator

    return sleep_cycle_frees_memory(
        CuMemAllocator.get_instance(),
        torch.cuda.mem_get_info,
        lambda n: torch.empty(n, dtype=torch.uint8, device="cuda"),
    )
