"""The trainer's GPU memory, as the step log shows it (`memory/*`, GiB; empty on CPU).

Read while the rollout engine sleeps, just before it wakes: what the trainer keeps then (live
tensors, and cached segments that a live tensor pins) is what the engine cannot have back. A run
whose `memory/used_while_asleep_gib` climbs step after step dies at the wake-up that no longer fits.

`used_while_asleep` is the device's own count (total - free): the figure to watch. allocated and
reserved are this process's PyTorch allocator, which also counts an in-process vLLM engine's
sleeping pool (its tensors stay allocated while their memory is unmapped).
"""

from __future__ import annotations

import torch

from core.distributed.devices import device_module

GIB = float(1 << 30)
_earlier_peaks: dict[str, int] = {}  # device -> the step's peak before a `restart_peak`, still to be reported


def memory_while_asleep(device: torch.device) -> dict[str, float]:
    """The device's used and free memory after `empty_cache`, and this process's allocator figures."""
    module = device_module(device)
    if module is None:
        return {}
    module.empty_cache()
    free, total = module.mem_get_info(device)
    return {
        "memory/used_while_asleep_gib": (total - free) / GIB,
        "memory/free_while_asleep_gib": free / GIB,
        "memory/allocated_gib": module.memory_allocated(device) / GIB,
        "memory/reserved_gib": module.memory_reserved(device) / GIB,
    }


def peak_since_last_call(device: torch.device) -> dict[str, float]:
    """The step's peak of live tensors (logits and activations of the largest micro-batch), then reset."""
    module = device_module(device)
    if module is None:
        return {}
    peak = max(module.max_memory_allocated(device), _earlier_peaks.pop(_key(device), 0)) / GIB
    module.reset_peak_memory_stats(device)
    return {"memory/peak_allocated_gib": peak}


def restart_peak(device: torch.device) -> None:
    """Measure one phase's peak from here (`max_memory_allocated`) without losing the step's peak so far,
    which `peak_since_last_call` still reports."""
    module = device_module(device)
    key = _key(device)
    _earlier_peaks[key] = max(_earlier_peaks.get(key, 0), module.max_memory_allocated(device))
    module.reset_peak_memory_stats(device)


def _key(device: torch.device) -> str:
    """"cuda" and "cuda:0" alike: the device index, the current one when unnamed."""
    device = torch.device(device)
    index = device.index if device.index is not None else device_module(device).current_device()
    return f"{device.type}:{index}"
