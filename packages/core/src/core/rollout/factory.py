"""One place that turns `cfg.backend.engine` into a rollout engine and the sharding manager that fits it.

Every backend builds the same pair: the HF engine when `backend.engine=hf`, vLLM otherwise; the HF
sharding manager for the HF engine, the hybrid vLLM one for anything else. Backends differ only in
the device, the HF dtype, how vLLM is started and whether the engine frees memory between rollouts.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from core.errors import TandemError

ENGINES = ("hf", "vllm")


def start_vllm(cfg: Any, model_dir: str, backend: str) -> Any:
    """The default vLLM start: `backend`'s patches, assembled engine args, `cfg.rollout.multiprocess`."""
    from core.rollout.vllm_engine import engine_from_config

    return engine_from_config(cfg, model_dir, backend)


def make_engine(
    cfg: Any,
    model_dir: str,
    backend: str,
    device: str,
    hf_dtype: torch.dtype = torch.bfloat16,
    vllm_starter: Callable[[Any, str, str], Any] = start_vllm,
) -> Any:
    """The engine `cfg.backend.engine` names: HF on `device` in `hf_dtype`, or `vllm_starter(cfg, model_dir, backend)`."""
    engine = cfg.backend.engine
    if engine not in ENGINES:
        raise TandemError(f"backend.engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    if engine == "hf":
        from core.rollout.hf_engine import HFRolloutEngine

        return HFRolloutEngine.from_pretrained(model_dir, device=device, dtype=hf_dtype)
    return vllm_starter(cfg, model_dir, backend)


def make_sharding_manager(engine: Any, trainer_model: torch.nn.Module, cfg: Any, free_cache_engine: bool) -> Any:
    """HF engine -> copy weights in; any vLLM engine -> the hybrid manager (sleeps only if `free_cache_engine`)."""
    from core.rollout.hf_engine import HFRolloutEngine

    if isinstance(engine, HFRolloutEngine):
        from core.sharding.hf import HFShardingManager

        return HFShardingManager(engine, trainer_model)
    from core.sharding.vllm import VllmShardingManager

    return VllmShardingManager(
        engine, trainer_model, free_cache_engine=free_cache_engine, check_weight_sync=bool(cfg.rollout.check_weight_sync)
    )
