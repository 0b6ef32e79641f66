"""The CUDA backend's answers to Tandem's hooks."""

from __future__ import annotations

import importlib.util

from core.plugins.hookspecs import Availability, BackendSpec, hookimpl

NAME = "cuda"


@hookimpl
def tandem_backends():
    return [BackendSpec(NAME, priority=50, description="NVIDIA GPUs: vLLM rollout, FSDP2 training")]


@hookimpl
def tandem_probe(backend):
    if backend != NAME:
        return None
    import torch

    if torch.version.hip is not None:
        return Availability(False, f"torch {torch.__version__} is a ROCm (HIP) build; use +backend=rocm")
    if torch.version.cuda is None:
        return Availability(False, f"torch {torch.__version__} is a CPU-only build")
    if not torch.cuda.is_available():
        return Availability(False, "no CUDA GPU is visible (check CUDA_VISIBLE_DEVICES and the driver)")
    if importlib.util.find_spec("vllm") is None:
        return Availability(False, "vLLM is not installed: pip install 'tandem-backend-cuda[vllm]'")
    return Availability(True, torch.cuda.get_device_name(0))
