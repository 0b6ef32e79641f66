"""The ROCm backend's answers to Tandem's hooks: probe, vLLM settings, patches, worker env, factories."""

from __future__ import annotations

import logging
import os

from omegaconf import OmegaConf

from core.plugins.hookspecs import BackendSpec, hookimpl

NAME = "rocm"
log = logging.getLogger("tandem.rocm")


@hookimpl
def tandem_backends():
    return [BackendSpec(NAME, priority=60, description="AMD GPUs: vLLM (ROCm build) rollout, FSDP2 training")]


@hookimpl
def tandem_probe(backend):
    if backend != NAME:
        return None
    from backend_rocm.probe import probe_rocm

    return probe_rocm()


@hookimpl
def tandem_vllm_engine_args(backend, cfg, engine_args):
    if backend != NAME:
        return None
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


@hookimpl
def tandem_vllm_patches(backend):
    if backend != NAME:
        return None
    from backend_rocm.patches import PATCHES

    return list(PATCHES)


@hookimpl
def tandem_worker_env(backend):
    if backend != NAME:
        return None
    from backend_rocm.devices import installed_ray_version, ray_worker_env

    return ray_worker_env(os.environ, installed_ray_version())


@hookimpl
def tandem_make_rollout_engine(backend, cfg, model_dir):
    if backend != NAME:
        return None
    from core.rollout.factory import make_engine

    return make_engine(cfg, model_dir, NAME, device="cuda", vllm_starter=start_rocm_vllm)  # "cuda" is HIP here


def start_rocm_vllm(cfg, model_dir, backend):
    """vLLM as the sleep plan says: one engine that sleeps or stays resident, or a new one per rollout."""
    from backend_rocm.sleep_mode import sleep_plan_for
    from core.rollout.factory import start_vllm

    if sleep_plan_for(cfg).mode == "rebuild":
        from backend_rocm.rebuild_engine import RebuildPerRolloutEngine

        return RebuildPerRolloutEngine(lambda: start_vllm(cfg, model_dir, backend))
    return start_vllm(cfg, model_dir, backend)


@hookimpl
def tandem_make_sharding_manager(backend, cfg, engine, trainer_model):
    if backend != NAME:
        return None
    from backend_rocm.sleep_mode import sleep_plan_for
    from core.rollout.factory import make_sharding_manager

    return make_sharding_manager(engine, trainer_model, cfg, sleep_plan_for(cfg).frees_memory_between_rollouts)
