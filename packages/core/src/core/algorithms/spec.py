"""An `algorithm:` config section checked once and turned into the facts the rest of Tandem asks.

The loop, the worker and the rollout ask the spec ("does this run need a reference model?")
instead of testing algorithm strings of their own; a typo fails here, before any model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.algorithms.advantages import ADVANTAGE_ESTIMATORS
from core.algorithms.aggregation import check_loss_agg_mode
from core.algorithms.kl import check_kl_estimator
from core.algorithms.policy_loss import POLICY_LOSSES
from core.algorithms.rollout_correction import MASK_MODES, ROLLOUT_CORRECTIONS
from core.errors import TandemError

KL_PLACEMENTS = ("none", "loss", "reward")


@dataclass(frozen=True)
class AlgorithmSpec:
    """What an algorithm config implies for the run."""

    needs_reference: bool  # a frozen reference policy for the KL term (kl_placement loss or reward)
    kl_in_loss: bool  # the KL term is added to the policy loss
    kl_in_reward: bool  # the KL term is subtracted from the token rewards before the advantages
    needs_critic: bool  # a value model (GAE)
    needs_greedy_baseline: bool  # a greedy response per prompt whose score is the baseline (ReMax)
    horizon: int  # the longest response, in tokens: the constant of seq-mean-token-sum-norm (Dr. GRPO)
    needs_rollout_logprobs: bool  # the loss corrects for the rollout/trainer mismatch with the engine's log-probs
    # a mask mode of the rollout correction takes tokens out of the response mask before the loss is aggregated,
    # over the whole mini-batch: it needs the behaviour log-probs beforehand, from their own pass
    rejects_tokens: bool = False

    @classmethod
    def from_config(cls, algorithm: Any, max_response_tokens: int) -> "AlgorithmSpec":
        check_algorithm_config(algorithm)
        return cls(
            needs_reference=algorithm.kl_placement != "none",
            kl_in_loss=algorithm.kl_placement == "loss",
            kl_in_reward=algorithm.kl_placement == "reward",
            needs_critic=algorithm.adv_estimator == "gae",
            needs_greedy_baseline=algorithm.adv_estimator == "remax",
            horizon=int(max_response_tokens),
            needs_rollout_logprobs=algorithm.rollout_correction != "none",
            rejects_tokens=algorithm.rollout_correction in MASK_MODES,
        )


def _one_of(key: str, value: str, valid) -> None:
    if value not in valid:
        raise TandemError(f"algorithm.{key}={value!r} is unknown; valid: {', '.join(valid)}")


def check_algorithm_config(algorithm: Any) -> None:
    """Raise TandemError naming the first bad key of an AlgorithmConfig (or any object with its fields)."""
    _one_of("adv_estimator", algorithm.adv_estimator, ADVANTAGE_ESTIMATORS)
    _one_of("policy_loss", algorithm.policy_loss, POLICY_LOSSES)
    check_loss_agg_mode(algorithm.loss_agg_mode)
    _one_of("kl_placement", algorithm.kl_placement, KL_PLACEMENTS)
    check_kl_estimator(algorithm.kl_estimator)
    _one_of("rollout_correction", algorithm.rollout_correction, ROLLOUT_CORRECTIONS)
    if algorithm.rollout_correction_cap <= 1:
        raise TandemError(f"algorithm.rollout_correction_cap must be > 1, got {algorithm.rollout_correction_cap}")
    if algorithm.kl_target is not None and algorithm.kl_placement != "reward":
        raise TandemError("algorithm.kl_target (adaptive KL) only applies with algorithm.kl_placement=reward")
    if not 0 <= algorithm.clip_ratio_low < 1 or algorithm.clip_ratio_high < 0:
        raise TandemError(
            f"algorithm.clip_ratio_low must be in [0, 1) and clip_ratio_high >= 0, "
            f"got {algorithm.clip_ratio_low}, {algorithm.clip_ratio_high}"
        )
    if algorithm.clip_ratio_c <= 1:
        raise TandemError(f"algorithm.clip_ratio_c (dual clip) must be > 1, got {algorithm.clip_ratio_c}")
