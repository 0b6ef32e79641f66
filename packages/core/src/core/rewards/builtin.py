"""Core's reward functions, offered to the plugin manager under short names.

`auto` picks the rule for each sample from its `data_source`, so one run can mix GSM8K and MATH.
"""

from __future__ import annotations

from core.data.reasoning_gym import DATA_SOURCE_PREFIX, reasoning_gym_last_number_reward, reasoning_gym_reward
from core.errors import TandemError
from core.plugins.hookspecs import hookimpl
from core.rewards.base import RewardInput
from core.rewards.format_reward import bare_number_format, boxed_format, hash_answer_format, think_format
from core.rewards.graded import concise_graded_reward, graded_reward
from core.rewards.gsm8k import gsm8k_flexible, gsm8k_strict
from core.rewards.math_answer import math_boxed
from core.rewards.similarity import answer_similarity

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


@hookimpl
def tandem_reward_functions():
    return {
        "auto": by_data_source,
        "gsm8k": gsm8k_strict,
        "gsm8k_flexible": gsm8k_flexible,
        "math": math_boxed,
        "format_hash": hash_answer_format,
        "format_boxed": boxed_format,
        "format_think": think_format,
        "format_number": bare_number_format,
        "reasoning_gym": reasoning_gym_reward,
        "reasoning_gym_last_number": reasoning_gym_last_number_reward,
        "similarity": answer_similarity,
        "graded": graded_reward,
        "graded_concise": concise_graded_reward,
    }
