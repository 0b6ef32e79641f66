"""Sharding manager for the HF engine: copy the trainer's weights in, one parameter at a time."""

from __future__ import annotations

import torch

from core.rollout.base import RolloutEngine
from core.sharding.base import iter_full_parameters


class HFShardingManager:
    """Any engine that holds its own copy of the weights: wake, copy them in, sleep after."""

    def __init__(self, engine: RolloutEngine, trainer_model: torch.nn.Module):
        self.engine = engine
        self.trainer_model = trainer_model

    def __enter__(self) -> "HFShardingManager":
        self.engine.wake_up()
        self.engine.update_weights(iter_full_parameters(self.trainer_model, self.engine.dtype))
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.engine.sleep()
