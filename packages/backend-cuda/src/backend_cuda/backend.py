"""The CUDA backend: NVIDIA GPUs, NCCL, vLLM with sleep mode (its cumem allocator) and CUDA graphs.

Everything else (engine and sharding-manager construction, engine-arg assembly) is core's default.
"""

from __future__ import annotations

from typing import Any

from core.backends.base import Availability, BaseBackend, VersionedPatch
from core.plugins.hookspecs import hookimpl


class CudaBackend(BaseBackend):
    name = "cuda"
    priority = 50
    description = "NVIDIA GPUs: vLLM rollout, FSDP2 training"
    device_type = "cuda"
    dist_backend = "nccl"
    ray_resource = "GPU"
    config_searchpath = "pkg://backend_cuda.conf"  # backend/cuda.yaml
    compiles_by_default = True  # inductor's Triton kernels pay for themselves on the GPU

    def release_ipc_memory(self) -> None:
        import torch

        torch.cuda.ipc_collect()

    def probe(self) -> Availability:
        import torch

        details = {"torch": torch.__version__, "torch.version.cuda": torch.version.cuda}
        if torch.version.hip is not None:
            return Availability(False, f"torch {torch.__version__} is a ROCm (HIP) build; use +backend=rocm", details)
        if torch.version.cuda is None:
            return Availability(False, f"torch {torch.__version__} is a CPU-only build", details)
        if not torch.cuda.is_available():
            return Availability(False, "no CUDA GPU is visible (check CUDA_VISIBLE_DEVICES and the driver)", details)
        details["gpu"] = torch.cuda.get_device_name(0)
        details["compute_capability"] = "%d.%d" % torch.cuda.get_device_capability(0)
        from core.patches import vllm_version

        details["vllm"] = vllm_version()
        if details["vllm"] is None:
            return Availability(False, "vLLM is not installed: pip install 'tandem-backend-cuda[vllm]'", details)
        return Availability(True, f"{details['gpu']}, vLLM {details['vllm']}", details)

    def vllm_engine_args(self, cfg, engine_args: dict[str, Any]) -> dict[str, Any]:
        # sleep mode needs vLLM's cumem allocator, which CUDA has; without sleeping there is no need
        return {"enable_sleep_mode": bool(cfg.rollout.free_cache_engine)}

    def patches(self) -> list[VersionedPatch]:
        from backend_cuda.patches import PATCHES

        return list(PATCHES)


@hookimpl
def tandem_backend(name: str):
    return CudaBackend() if name == CudaBackend.name else None
