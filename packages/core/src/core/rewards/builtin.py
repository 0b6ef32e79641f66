"""Core's reward functions, offered to the plugin manager under short names.

`auto` picks the rule for each sample from its `data_source` (core.rewards.by_data_source).
"""

from __future__ import annotations

from core.data.reasoning_gym import reasoning_gym_last_number_reward, reasoning_gym_reward
from core.plugins.hookspecs import hookimpl
from core.rewards.by_data_source import by_data_source
from core.rewards.format_reward import bare_number_format, boxed_format, hash_answer_format, think_format
from core.rewards.graded import concise_graded_reward, graded_reward
from core.rewards.gsm8k import gsm8k_flexible, gsm8k_strict
from core.rewards.math_answer import math_boxed
from core.rewards.similarity import answer_similarity

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
