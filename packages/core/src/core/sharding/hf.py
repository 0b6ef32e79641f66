"""Sharding manager for the HF engine: copy the trainer's weights in, one parameter at a time."""

from __future__ import annotations

import torch

from core.rollout.hf_engine import HFRolloutEngine
from core.sharding.base import iter_full_parameters


class HFShardingManager:
    def __init__(self, engine: HFRolloutEngine, trainer_model: torch.nn.Module):
        self.engine = engine
        self.trainer_model = trainer_model

    def __enter__(self) -> "HFShardingManager":
        self.engine.wake_up()
        engine_dtype = next(self.engine.model.parameters()).dtype
        self.engine.update_weights(iter_full_parameters(self.trainer_model, engine_dtype))
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.engine.sleep()
