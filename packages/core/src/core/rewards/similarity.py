"""A graded reward for short text answers: how close the reply is to the reference."""

from __future__ import annotations

from difflib import SequenceMatcher

from core.data.reasoning_gym import extract_answer
from core.errors import TandemError
from core.rewards.base import RewardInput


def answer_similarity(sample: RewardInput) -> float:
    """difflib's ratio 2·M / (len(reply) + len(reference)), M the characters matched in order (the
    longest-common-subsequence score prime-rl's reverse-text example trains on).

    1.0 only for the exact answer, so `val/accuracy` keeps meaning exactly right. Unlike a prefix score
    (reasoning-gym's spell_backward gives 0.8 for the right word followed by anything), every missing or
    extra character costs, so a policy cannot gain by padding its reply: seen on the H200, where GRPO on
    the prefix score grew greedy replies from 4 to 26 tokens while exact answers fell from 11% to 3%.
    The reply is compared whole, or its last `<answer>` tag's content; both sides stripped, case kept.
    """
    if sample.ground_truth is None:
        raise TandemError("reward 'similarity' needs a reference: the dataset's reward_model.ground_truth is missing")
    reference = str(sample.ground_truth).strip()
    return SequenceMatcher(None, extract_answer(sample.response), reference, autojunk=False).ratio()
