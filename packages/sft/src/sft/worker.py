"""One rank of an SFT run: its data, the model being trained, the validation engine and validator.

The loop (sft/loop.py) drives one SFTWorker per rank through a core worker group, the same calls
whichever launcher started it: in-process (one device, or this process's rank under torchrun) or
Ray (one actor per GPU, `trainer.launcher=ray`). Every rank gets the same arguments and every
method returns the same answer on every rank (all-reduced or gathered in rank order).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch

from core.checkpoint.manager import Trainable
from core.distributed.devices import use_cpu_threads
from core.distributed.collectives import is_distributed, world
from core.plugins.manager import get_plugin_manager, load_backend
from core.rollout.base import EngineSettings, EngineTarget
from core.rewards.scoring import RewardScorer, resolve_reward_fn
from core.models.compiled_parts import compile_layer_parts, switch_compile
from core.trainer.precision import configured_precision
from core.trainer.memory_plan import check_memory_plan
from core.trainer.setup import check_cpu_offload, load_policy, model_dtype, resolve_device, resolve_packing
from core.workers.base import ModelWorker
from sft.dataset import load_data
from sft.engine import ValidationEngine, backend_engine_factory, hf_engine_factory, sampling_params
from sft.trainer import SFTTrainer
from sft.generation_validator import Validator


class SFTWorker(ModelWorker):
    def __init__(self, cfg):
        torch.manual_seed(cfg.trainer.seed)  # identical initial state on every rank
        self.cfg = cfg
        sharded = is_distributed()
        backend = load_backend(cfg.backend.name)
        # under torchrun each rank has its own device; under Ray each actor sees exactly one
        device = resolve_device(cfg.trainer.device, backend, int(os.environ.get("LOCAL_RANK", "0")) if sharded else 0)
        use_cpu_threads(device)
        check_cpu_offload(cfg.trainer, sharded)
        check_memory_plan(cfg, None, device, world()[1])  # refuses, before loading, what cannot fit
        # under FSDP the parameters are fp32 masters and model.dtype is the forward's
        packed = resolve_packing(cfg.trainer.remove_padding, device, model_dtype(cfg.model))  # null: the device's best
        precision = configured_precision(cfg.model, cfg.trainer, model_dtype(cfg.model), sharded)
        self.model_dir, self.tokenizer, self.policy = load_policy(cfg.model, device, precision.param_dtype, packed=packed)
        if switch_compile(cfg.trainer.compile, device, self.policy, backend.compiles_by_default):  # before sharding
            compile_layer_parts(self.policy)
        self.train_set, val_set = load_data(cfg, self.tokenizer)
        self.trainer = SFTTrainer(self.policy, cfg.trainer, self.tokenizer.pad_token_id, packed=packed,
                                  compute_dtype=cfg.model.dtype, precision=precision)
        pm = get_plugin_manager()
        self.scorer = RewardScorer(resolve_reward_fn(cfg.data.reward_fn, pm), workers=1) if cfg.data.reward_fn else None
        # validation prompts are left-truncated to data.max_prompt_length (dataset.py): that sizes the engine
        target = EngineTarget(self.model_dir, int(cfg.data.max_prompt_length), int(cfg.trainer.seed))
        engine_settings = EngineSettings.from_config(cfg)  # the rollout and backend groups, all a backend reads
        self.engine = ValidationEngine(
            backend_engine_factory(backend, engine_settings, target, self.policy),
            hf_engine_factory(self.model_dir, self.policy) if cfg.validation.engine_fallback else None,
            sleep_between=backend.frees_memory_between_rollouts(engine_settings),
        )
        self.validator = Validator(val_set, self.engine, self.tokenizer, sampling_params(cfg.validation, self.tokenizer),
                                   self.scorer, Path(cfg.trainer.output_dir), cfg.validation.log_samples)

    def train_size(self) -> int:
        return len(self.train_set)

    def train_step(self, indices: Sequence[int]) -> dict[str, float]:
        """One optimizer step on the training conversations `indices` (this rank trains on its share)."""
        return self.trainer.train_step([self.train_set[i] for i in indices])

    def validate(self, step: int) -> dict[str, float]:
        """Generation split over the ranks and gathered in order; rank 0 writes validation/step_N.jsonl."""
        return self.validator.run(step, self.trainer)

    def _parts(self) -> dict[str, Trainable]:
        return {"actor": self.trainer.checkpointable()}

    def close(self) -> None:
        try:
            self.engine.close()
        finally:
            if self.scorer is not None:
                self.scorer.close()
