"""Core's own plugin: the `cpu` backend (HF generation engine), always available.

It answers the same hooks as any installed backend, so nothing in core special-cases it.
"""

from __future__ import annotations

import torch

from core.plugins.hookspecs import Availability, BackendSpec, hookimpl

NAME = "cpu"


@hookimpl
def tandem_backends():
    return [BackendSpec(NAME, priority=0, description="any machine: HF transformers generation on the CPU")]


@hookimpl
def tandem_probe(backend):
    if backend != NAME:
        return None
    return Availability(True, f"torch {torch.__version__}, {torch.get_num_threads()} threads")


@hookimpl
def tandem_make_rollout_engine(backend, cfg, model_dir):
    if backend != NAME:
        return None
    from core.rollout.hf_engine import HFRolloutEngine

    return HFRolloutEngine.from_pretrained(model_dir, device="cpu", dtype=torch.float32)


@hookimpl
def tandem_make_sharding_manager(backend, cfg, engine, trainer_model):
    if backend != NAME:
        return None
    from core.sharding.hf import HFShardingManager

    return HFShardingManager(engine, trainer_model)
