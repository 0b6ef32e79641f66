"""The stages a step's batch goes through, each a type of its own (core.trainer.batch) made by a function that
returns a new batch (none writes into the one it is given): the rollout (TrainingBatch) -> ScoredBatch ->
LogprobBatch -> AdvantageBatch, which the update trains on.

A stage's batch is never changed after it is made, so a batch can be held back and trained on later (the
asynchronous rollouts of issue 40) without a later stage's writes reaching an earlier one's readers.
"""

from __future__ import annotations

import torch

from core.algorithms.advantages import compute_advantages
from core.algorithms.kl import apply_kl_in_reward
from core.algorithms.spec import AlgorithmSpec
from core.rl.experience import Experience
from core.trainer.batch import (AdvantageBatch, LogprobBatch, ScoredBatch, batch_from_rollout,
                                last_token_rewards)


def scored_batch(experience: Experience, pad_token_id: int, on_policy: bool) -> ScoredBatch:
    """The rollout laid out for the trainer, each response's score on its last token. `on_policy`: the update's
    own forward will supply the behaviour log-probs (core.trainer.actor.behaviour_logprobs_from_update)."""
    batch = batch_from_rollout(experience.output, pad_token_id)
    return ScoredBatch.after(batch, scores=experience.scores, on_policy=on_policy,
                             token_rewards=last_token_rewards(experience.scores, batch.response_mask))


def with_logprobs(batch: ScoredBatch, workers, spec: AlgorithmSpec) -> tuple[LogprobBatch, torch.Tensor | None]:
    """Behaviour and reference log-probs (and the critic's values) under the trainer's numerics, and the
    behaviour pass's entropies [rows, response_len]. An on-policy batch has no behaviour pass (None, None):
    its update scores it."""
    old_logprobs, entropy = (None, None) if batch.on_policy else workers.compute_logprobs(batch)
    return LogprobBatch.after(batch, old_logprobs=old_logprobs,
                              ref_logprobs=workers.compute_ref_logprobs(batch) if spec.needs_reference else None,
                              values=workers.compute_values(batch) if spec.needs_critic else None), entropy


def with_advantages(batch: LogprobBatch, algo, spec: AlgorithmSpec, kl_controller,
                    baseline_scores: torch.Tensor | None) -> tuple[AdvantageBatch, dict[str, float]]:
    """The estimator's advantages and returns (`algo`: the algorithm config group), after the KL penalty on the
    rewards where the algorithm puts it there (its coefficient logged as actor/kl_coef)."""
    token_rewards, metrics = batch.token_rewards, {}
    if spec.kl_in_reward:
        penalized = apply_kl_in_reward(token_rewards, batch.old_logprobs, batch.ref_logprobs, batch.response_mask,
                                       kl_controller, algo.kl_estimator)
        token_rewards, metrics = penalized.token_rewards, {"actor/kl_coef": penalized.coef}
    advantages, returns = compute_advantages(
        algo.adv_estimator, token_rewards=token_rewards, response_mask=batch.response_mask, group_ids=batch.group_ids,
        values=batch.values, baseline_rewards=baseline_scores, gamma=algo.gamma, lam=algo.lam)
    return AdvantageBatch.after(batch, token_rewards=token_rewards, advantages=advantages, returns=returns), metrics
