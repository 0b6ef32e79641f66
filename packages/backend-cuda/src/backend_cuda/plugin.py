"""The CUDA backend's answers to Tandem's hooks: probe, vLLM engine settings, patches, factories."""

from __future__ import annotations

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


@hookimpl
def tandem_vllm_engine_args(backend, cfg, engine_args):
    if backend != NAME:
        return None
    # sleep mode needs vLLM's cumem allocator, which CUDA has; without sleeping there is no need
    return {"enable_sleep_mode": bool(cfg.rollout.free_cache_engine)}


@hookimpl
def tandem_vllm_patches(backend):
    if backend != NAME:
        return None
    from backend_cuda.patches import PATCHES

    return list(PATCHES)


@hookimpl
def tandem_make_rollout_engine(backend, cfg, model_dir):
    if backend != NAME:
        return None
    from core.rollout.factory import make_engine

    return make_engine(cfg, model_dir, NAME, device="cuda")


@hookimpl
def tandem_make_sharding_manager(backend, cfg, engine, trainer_model):
    if backend != NAME:
        return None
    from core.rollout.factory import make_sharding_manager

    return make_sharding_manager(engine, trainer_model, cfg, free_cache_engine=bool(cfg.rollout.free_cache_engine))
