"""The reward-function interface.

A reward function scores one decoded response. It is plain Python (no tensors), so users can write
one in a few lines and point at it with a dotted path `module:function` or register it as a plugin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class RewardInput:
    """Everything a reward function may look at for one sample."""

    response: str  # decoded response, special tokens removed
    ground_truth: Any = None  # from the dataset's reward_model.ground_truth
    prompt: str = ""  # decoded prompt, for functions that need context
    data_source: str = ""  # dataset name, e.g. "openai/gsm8k"
    extra_info: dict = field(default_factory=dict)


@runtime_checkable
class RewardFunction(Protocol):
    def __call__(self, sample: RewardInput) -> float: ...
