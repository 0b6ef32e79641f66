"""RL algorithms as pure tensor functions: advantage estimators, policy and value losses, loss
aggregation exact under micro-batching and data parallelism, KL estimators and controllers,
chunked log-probs/entropy from logits, and DAPO's dynamic sampling and over-long penalty.

The trainer selects by config string through `compute_advantages(algorithm.adv_estimator, ...)`
and `compute_policy_loss(algorithm.policy_loss, ...)`; see aggregation.py for the loss-scaling
convention every loss here follows.
"""

from core.algorithms.advantages import (
    ADVANTAGE_ESTIMATORS,
    compute_advantages,
    discounted_returns,
    gae_advantages,
    gpg_advantages,
    grpo_advantages,
    opo_advantages,
    reinforce_pp_advantages,
    reinforce_pp_baseline_advantages,
    remax_advantages,
    rloo_advantages,
    sequence_scores,
)
from core.algorithms.aggregation import LOSS_AGG_MODES, LossCounts, aggregate_loss, check_loss_agg_mode, loss_counts
from core.algorithms.covariance_losses import clip_cov_token_losses, kl_cov_token_losses
from core.algorithms.dapo import DynamicSamplingAccumulator, informative_rows, overlong_penalty
from core.algorithms.entropy import entropy_from_logits
from core.algorithms.kl import (
    KL_ESTIMATORS,
    AdaptiveKLController,
    FixedKLController,
    KLRewardResult,
    apply_kl_in_reward,
    check_kl_estimator,
    kl_estimate,
    kl_penalized_rewards,
    make_kl_controller,
)
from core.algorithms.logprobs import logprobs_from_logits
from core.algorithms.masked import masked_mean, masked_whiten
from core.algorithms.policy_loss import (
    POLICY_LOSSES,
    PolicyLossOptions,
    cispo_token_losses,
    compute_policy_loss,
    gspo_token_losses,
    ppo_clip_token_losses,
    reinforce_token_losses,
)
from core.algorithms.spec import KL_PLACEMENTS, AlgorithmSpec, check_algorithm_config
from core.algorithms.value import value_loss

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "KL_ESTIMATORS",
    "KL_PLACEMENTS",
    "LOSS_AGG_MODES",
    "POLICY_LOSSES",
    "AdaptiveKLController",
    "AlgorithmSpec",
    "DynamicSamplingAccumulator",
    "FixedKLController",
    "KLRewardResult",
    "LossCounts",
    "PolicyLossOptions",
    "aggregate_loss",
    "apply_kl_in_reward",
    "check_algorithm_config",
    "cispo_token_losses",
    "clip_cov_token_losses",
    "check_kl_estimator",
    "check_loss_agg_mode",
    "compute_advantages",
    "compute_policy_loss",
    "discounted_returns",
    "entropy_from_logits",
    "gae_advantages",
    "gpg_advantages",
    "grpo_advantages",
    "gspo_token_losses",
    "informative_rows",
    "kl_cov_token_losses",
    "kl_estimate",
    "kl_penalized_rewards",
    "logprobs_from_logits",
    "loss_counts",
    "make_kl_controller",
    "masked_mean",
    "masked_whiten",
    "opo_advantages",
    "overlong_penalty",
    "ppo_clip_token_losses",
    "reinforce_pp_advantages",
    "reinforce_pp_baseline_advantages",
    "reinforce_token_losses",
    "remax_advantages",
    "rloo_advantages",
    "sequence_scores",
    "value_loss",
]
