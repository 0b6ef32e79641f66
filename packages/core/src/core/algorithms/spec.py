"""An `algorithm:` config section checked once and turned into the facts the rest of Tandem asks.

The loop, the worker and the rollout ask the spec ("does this run need a reference model?")
instead of testing algorithm strings of their own; a typo fails here, before any model is loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from core.algorithms.advantages import ADVANTAGE_ESTIMATORS
from core.algorithms.aggregation import LOSS_AGG_MODES
from core.algorithms.kl import KL_ESTIMATORS
from core.algorithms.policy_loss import POLICY_LOSSES
from core.algorithms.rollout_correction import MASK_MODES, ROLLOUT_CORRECTIONS
from core.config.rules import MISSING, NON_NEGATIVE, Rule, check_rules, one_of
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


ALGORITHM_RULES: list[Rule] = [
    ("algorithm.adv_estimator", *one_of(ADVANTAGE_ESTIMATORS)),
    ("algorithm.policy_loss", *one_of(POLICY_LOSSES)),
    ("algorithm.loss_agg_mode", *one_of(LOSS_AGG_MODES)),
    ("algorithm.kl_placement", *one_of(KL_PLACEMENTS)),
    ("algorithm.kl_estimator", lambda v: v.removesuffix("+") in KL_ESTIMATORS,
     f"one of {', '.join(KL_ESTIMATORS)} (each optionally with '+')"),
    ("algorithm.kl_coef", *NON_NEGATIVE),
    ("algorithm.entropy_coef", lambda v: math.isfinite(v), "a finite number"),
    ("algorithm.rollout_correction", *one_of(ROLLOUT_CORRECTIONS)),
    ("algorithm.rollout_correction_cap", lambda v: v > 1, "> 1"),
    ("algorithm.clip_ratio_low", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("algorithm.clip_ratio_high", lambda v: v >= 0, ">= 0"),
    ("algorithm.clip_ratio_c", lambda v: v > 1, "> 1 (dual clip)"),
    ("algorithm.clip_cov_ratio", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("algorithm.kl_cov_ratio", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("algorithm.kl_cov_coef", *NON_NEGATIVE),
]


def check_algorithm_config(algorithm: Any) -> None:
    """Raise TandemError naming the first bad key of an AlgorithmConfig (or any object with its fields)."""
    check_rules(lambda key: getattr(algorithm, key.removeprefix("algorithm."), MISSING), ALGORITHM_RULES)
    if algorithm.kl_target is not None and algorithm.kl_placement != "reward":
        raise TandemError("algorithm.kl_target (adaptive KL) only applies with algorithm.kl_placement=reward")
