"""`reward.reward_fn=auto`: each sample scored by the rule of its `data_source`, so one run can mix GSM8K
and MATH."""

from __future__ import annotations

from core.data.reasoning_gym import DATA_SOURCE_PREFIX, reasoning_gym_reward
from core.errors import TandemError
from core.rewards.base import RewardInput
from core.rewards.gsm8k import gsm8k_strict
from core.rewards.math_answer import math_boxed

# data_source values written by `python -m core.data.prepare`, plus the names verl's files use.
RULE_BY_DATA_SOURCE = {
    "openai/gsm8k": gsm8k_strict,
    "gsm8k": gsm8k_strict,
    "hendrycks/math": math_boxed,
    "hendrycks/competition_math": math_boxed,
    "DigitalLearningGmbH/MATH-lighteval": math_boxed,
    "math": math_boxed,
}


def by_data_source(sample: RewardInput) -> float:
    """Score with the rule that matches the sample's `data_source`."""
    rule = RULE_BY_DATA_SOURCE.get(sample.data_source)
    if rule is None and sample.data_source.startswith(DATA_SOURCE_PREFIX):
        rule = reasoning_gym_reward
    if rule is None:
        known = ", ".join([*RULE_BY_DATA_SOURCE, DATA_SOURCE_PREFIX + "*"])
        raise TandemError(
            f"reward 'auto' has no rule for data_source '{sample.data_source}' (known: {known}); "
            "set reward.reward_fn to a reward name or 'module:function'"
        )
    return rule(sample)
