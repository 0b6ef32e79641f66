"""The ROCm backend's answers to Tandem's hooks."""

from __future__ import annotations

import importlib.util

from core.plugins.hookspecs import Availability, BackendSpec, hookimpl

NAME = "rocm"


@hookimpl
def tandem_backends():
    return [BackendSpec(NAME, priority=60, description="AMD GPUs: vLLM (ROCm build) rollout, FSDP2 training")]


@hookimpl
def tandem_probe(backend):
    if backend != NAME:
        return None
    import torch

    # torch.cuda.is_available() is True on ROCm too; only torch.version.hip tells the builds apart.
    if torch.version.hip is None:
        return Availability(False, f"torch {torch.__version__} is not a ROCm (HIP) build")
    if not torch.cuda.is_available():
        return Availability(False, "no AMD GPU is visible (check HIP_VISIBLE_DEVICES and the ROCm driver)")
    if importlib.util.find_spec("vllm") is None:
        return Availability(False, "vLLM (ROCm build) is not installed")
    return Availability(True, torch.cuda.get_device_name(0))
