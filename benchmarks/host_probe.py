"""What the host and the GPU do during one timed block: is a rollout bound by the host's CPU or the GPU?

    with HostProbe() as probe:
        engine.generate(...)
    print(probe.summary())

Reports the block's wall seconds, the CPU seconds of each of the process's threads (from /proc: a thread
other than the one generating that burns CPU competes with it for the GIL), the GPU's busy share and SM clock
and power sampled through NVML every 50 ms (a clock held down after the trainer's phases would slow the
GPU's half of each decode step). Linux and NVIDIA only; elsewhere the GPU part is left out.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) of each thread of this process, keyed `name/tid`."""
    seconds = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            name = (task / "comm").read_text().strip()
        except OSError:  # the thread ended meanwhile
            continue
        seconds[f"{name}/{task.name}"] = (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
    return seconds


class HostProbe:
    def __init__(self, interval_s: float = 0.05):
        self.interval_s = interval_s
        self.samples: list[tuple[int, float, int]] = []  # (SM MHz, watts, GPU busy %)

    def __enter__(self) -> "HostProbe":
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True, name="host-probe")
        self._cpu_before, self._start = thread_cpu_seconds(), time.perf_counter()
        self._sampler.start()
        return self

    def __exit__(self, *exc) -> None:
        self.wall_s = time.perf_counter() - self._start
        after = thread_cpu_seconds()
        self._stop.set()
        self._sampler.join()
        self.threads = sorted(((after[k] - self._cpu_before.get(k, 0.0), k) for k in after), reverse=True)

    def _sample(self) -> None:
        try:
            from vllm.third_party import pynvml
        except ImportError:
            return
        pynvml.nvmlInit()
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0"
        handle = pynvml.nvmlDeviceGetHandleByIndex(int(visible))
        while not self._stop.wait(self.interval_s):
            self.samples.append((pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM),
                                 pynvml.nvmlDeviceGetPowerUsage(handle) / 1000,
                                 pynvml.nvmlDeviceGetUtilizationRates(handle).gpu))

    def summary(self) -> str:
        busy = sum(s for s, _ in self.threads)
        top = ", ".join(f"{name} {s:.2f}" for s, name in self.threads[:4] if s > 0.01)
        gpu = ""
        if self.samples:
            mean = lambda i: sum(s[i] for s in self.samples) / len(self.samples)  # noqa: E731
            gpu = f"; GPU busy {mean(2):.0f}%, SM {mean(0):.0f} MHz (min {min(s[0] for s in self.samples)}), {mean(1):.0f} W"
        return f"{self.wall_s:.2f} s wall, CPU {busy:.2f} s over threads ({top}){gpu}"
