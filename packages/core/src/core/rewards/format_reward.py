"""Format rewards: did the response state its answer the way the prompt asked?

Useful on their own early in training, or added to a correctness reward with a small weight.
"""

from __future__ import annotations

import re

from core.rewards.base import RewardInput
from core.rewards.gsm8k import extract_answer
from core.rewards.math_answer import last_boxed

_THINK_THEN_ANSWER = re.compile(r"^\s*<think>.+?</think>\s*\S", re.DOTALL)


def hash_answer_format(sample: RewardInput) -> float:
    """1.0 if the response states a number after `####` (GSM8K's format)."""
    return float(extract_answer(sample.response, "strict") is not None)


def boxed_format(sample: RewardInput) -> float:
    """1.0 if the response holds a complete `\\boxed{...}` (MATH's format)."""
    return float(last_boxed(sample.response) is not None)


def think_format(sample: RewardInput) -> float:
    """1.0 if the response opens with `<think>...</think>` followed by an answer."""
    return float(_THINK_THEN_ANSWER.match(sample.response) is not None)
