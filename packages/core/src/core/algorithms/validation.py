"""Check an `algorithm:` config section up front, so a typo fails before any model is loaded."""

from __future__ import annotations

from typing import Any

from core.algorithms.advantages import ADVANTAGE_ESTIMATORS
from core.algorithms.aggregation import check_loss_agg_mode
from core.algorithms.kl import check_kl_estimator
from core.algorithms.policy_loss import POLICY_LOSSES
from core.errors import TandemError

KL_PLACEMENTS = ("none", "loss", "reward")


def _one_of(key: str, value: str, valid) -> None:
    if value not in valid:
        raise TandemError(f"algorithm.{key}={value!r} is unknown; valid: {', '.join(valid)}")


def validate_algorithm_config(algorithm: Any) -> None:
    """Raise TandemError naming the first bad key of an AlgorithmConfig (or any object with its fields)."""
    _one_of("adv_estimator", algorithm.adv_estimator, ADVANTAGE_ESTIMATORS)
    _one_of("policy_loss", algorithm.policy_loss, POLICY_LOSSES)
    check_loss_agg_mode(algorithm.loss_agg_mode)
    _one_of("kl_placement", algorithm.kl_placement, KL_PLACEMENTS)
    check_kl_estimator(algorithm.kl_estimator)
    if algorithm.kl_target is not None and algorithm.kl_placement != "reward":
        raise TandemError("algorithm.kl_target (adaptive KL) only applies with algorithm.kl_placement=reward")
    if not 0 <= algorithm.clip_ratio_low < 1 or algorithm.clip_ratio_high < 0:
        raise TandemError(
            f"algorithm.clip_ratio_low must be in [0, 1) and clip_ratio_high >= 0, "
            f"got {algorithm.clip_ratio_low}, {algorithm.clip_ratio_high}"
        )
    if algorithm.clip_ratio_c <= 1:
        raise TandemError(f"algorithm.clip_ratio_c (dual clip) must be > 1, got {algorithm.clip_ratio_c}")
