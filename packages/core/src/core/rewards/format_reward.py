"""Format rewards: did the response state its answer the way the prompt asked?

Useful on their own early in training, or added to a correctness reward with a small weight.
"""

from __future__ import annotations

import re

from core.rewards.base import RewardInput
from core.rewards.gsm8k import extract_answer
from core.rewards.math_answer import last_boxed

_THINK_THEN_ANSWER = re.compile(r"^\s*<think>.+?</think>\s*\S", re.DOTALL)
_BARE_NUMBER = re.compile(r"^\s*-?\d+(?:\.\d+)?\s*$")


def hash_answer_format(sample: RewardInput) -> float:
    """1.0 if the response states a number after `####` (GSM8K's format)."""
    return float(extract_answer(sample.response, "strict") is not None)


def boxed_format(sample: RewardInput) -> float:
    """1.0 if the response holds a complete `\\boxed{...}` (MATH's format)."""
    return float(last_boxed(sample.response) is not None)


def think_format(sample: RewardInput) -> float:
    """1.0 if the response opens with `<think>...</think>` followed by an answer."""
    return float(_THINK_THEN_ANSWER.match(sample.response) is not None)


def bare_number_format(sample: RewardInput) -> float:
    """1.0 if the whole response is one number ("Give only the final answer." for arithmetic)."""
    return float(_BARE_NUMBER.match(sample.response) is not None)


class WithFormatBonus:
    """`reward(sample) + weight * format_reward(sample)`: a correctness reward plus a small format term.

    A class, not a closure, so process pools can pickle it (when both functions are importable).
    """

    def __init__(self, reward, format_reward, weight: float):
        self.reward, self.format_reward, self.weight = reward, format_reward, weight
        self.__qualname__ = f"{getattr(reward, '__qualname__', reward)}+{weight}*{getattr(format_reward, '__qualname__', format_reward)}"

    def __call__(self, sample: RewardInput) -> float:
        return self.reward(sample) + self.weight * self.format_reward(sample)
