"""Validation during RL: generate on the held-out prompts and score them, per data source."""

from __future__ import annotations

from collections import defaultdict

from core.data.rl_dataset import RLDataset
from core.rewards.scoring import BatchScorer, reward_inputs
from core.rollout.base import Sampler, SamplingParams


def validate(
    engine: Sampler, dataset: RLDataset, scorer: BatchScorer, params: SamplingParams, tokenizer
) -> dict[str, float]:
    """Metrics for one pass over `dataset`, generated in one batched call.

    Returns `val/<data_source>/reward` (mean over samples), `val/<data_source>/accuracy` (share of
    samples with the full score, 1.0: exactly right under rule rewards), `val/reward`, `val/accuracy`
    (over all samples),
    `val/response_length/mean`, `val/reward/errors`, and with `params.n > 1`
    `val/<data_source>/best_of_n` (mean over prompts of the best of their n scores).
    Call it inside the sharding manager's context so the engine holds the current weights.
    """
    output = engine.generate([sample.prompt_ids for sample in dataset.samples], params)
    scored = scorer.score(reward_inputs(dataset.samples, output, tokenizer))
    scores = scored.scores.tolist()
    groups = output.group_ids.tolist()

    by_source: dict[str, list[float]] = defaultdict(list)
    best_by_prompt: dict[int, float] = {}
    for score, group in zip(scores, groups):
        by_source[dataset[group].data_source].append(score)
        best_by_prompt[group] = max(score, best_by_prompt.get(group, score))

    metrics = {f"val/{source}/reward": sum(v) / len(v) for source, v in sorted(by_source.items())}
    metrics.update({f"val/{source}/accuracy": _accuracy(v) for source, v in sorted(by_source.items())})
    metrics["val/reward"] = sum(scores) / len(scores)
    metrics["val/accuracy"] = _accuracy(scores)
    metrics["val/response_length/mean"] = output.response_lengths.float().mean().item()
    metrics["val/reward/errors"] = float(scored.errors)
    metrics.update({f"val/{key}": value for key, value in output.metrics.items()})  # the agent loop's counts
    if params.n > 1:
        best_by_source: dict[str, list[float]] = defaultdict(list)
        for group, best in best_by_prompt.items():
            best_by_source[dataset[group].data_source].append(best)
        metrics.update({f"val/{s}/best_of_n": sum(v) / len(v) for s, v in sorted(best_by_source.items())})
    return metrics


def _accuracy(scores: list[float]) -> float:
    return sum(score >= 1.0 for score in scores) / len(scores)
