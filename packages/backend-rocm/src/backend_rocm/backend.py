"""The ROCm backend: AMD GPUs (HIP builds of torch answer to the "cuda" device type), RCCL, vLLM's
ROCm build tuned per AMD's "verl performance tuning for AMD" notes.

Where ROCm differs from core's defaults: its probe, the engine args and capture sizes, a sleep-mode
check with a fallback (stay resident, or rebuild the engine per rollout), Ray's device variables.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, List

from omegaconf import OmegaConf

from core.backends.base import Availability, BaseBackend, VersionedPatch, VllmSettings
from core.plugins.hookspecs import hookimpl

log = logging.getLogger("tandem.rocm")


@dataclass
class RocmSettings(VllmSettings):
    """`backend.settings` of `+backend=rocm` (the yaml documents each value)."""

    cudagraph_capture_sizes: List[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64])
    multi_node_cuda_graphs: bool = False
    nnodes: int = 1
    disable_custom_all_reduce: bool = True
    skip_tokenizer_init: bool = False
    disable_mm_preprocessor_cache: bool = True
    sleep_fallback: str = "resident"  # resident | rebuild
    resident_gpu_memory_utilization: float = 0.3
    verify_sleep_cycle: bool = True


class RocmBackend(BaseBackend):
    name = "rocm"
    priority = 60
    description = "AMD GPUs: vLLM (ROCm build) rollout, FSDP2 training"
    device_type = "cuda"  # HIP
    dist_backend = "nccl"  # RCCL behind torch's nccl name
    ray_resource = "GPU"
    config_searchpath = "pkg://backend_rocm.conf"  # backend/rocm.yaml
    compiles_by_default = True  # inductor's Triton kernels pay for themselves on the GPU

    def release_ipc_memory(self) -> None:
        import torch

        torch.cuda.ipc_collect()
    settings_schema = RocmSettings

    def probe(self) -> Availability:
        from backend_rocm.probe import probe_rocm

        return probe_rocm()

    def vllm_engine_args(self, cfg, engine_args: dict[str, Any]) -> dict[str, Any]:
        from backend_rocm.engine_args import is_multimodal, rocm_engine_args
        from backend_rocm.sleep_mode import sleep_plan_for
        from core.patches import vllm_version

        settings = OmegaConf.to_container(cfg.backend.settings, resolve=True)
        args, warnings = rocm_engine_args(
            settings, engine_args, vllm_version=vllm_version() or "0", nnodes=int(settings["nnodes"]),
            plan=sleep_plan_for(cfg), multimodal=is_multimodal(engine_args["model"]), environ=os.environ,
        )
        for warning in warnings:
            log.warning(warning)
        return args

    def patches(self) -> list[VersionedPatch]:
        from backend_rocm.patches import PATCHES

        return list(PATCHES)

    def worker_env(self) -> dict[str, str | None]:
        from backend_rocm.devices import installed_ray_version, ray_worker_env

        return ray_worker_env(os.environ, installed_ray_version())

    def frees_memory_between_rollouts(self, cfg) -> bool:
        from backend_rocm.sleep_mode import sleep_plan_for

        return sleep_plan_for(cfg).frees_memory_between_rollouts

    def start_vllm(self, cfg, target):
        """vLLM as the sleep plan says: one engine that sleeps or stays resident, or a new one per rollout."""
        from backend_rocm.sleep_mode import sleep_plan_for

        if sleep_plan_for(cfg).mode == "rebuild":
            from backend_rocm.rebuild_engine import RebuildPerRolloutEngine

            return RebuildPerRolloutEngine(lambda: BaseBackend.start_vllm(self, cfg, target))
        return super().start_vllm(cfg, target)


@hookimpl
def tandem_backend(name: str):
    return RocmBackend() if name == RocmBackend.name else None
