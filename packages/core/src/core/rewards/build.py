"""The trainer's one call to get a scorer: a reward model if a path is given, else a reward function."""

from __future__ import annotations

import pluggy

from core.rewards.scoring import BatchScorer, RewardScorer, resolve_reward_fn


def build_reward_scorer(
    pm: pluggy.PluginManager,
    reward_fn: str = "auto",
    model_path: str | None = None,
    device: str = "cpu",
    workers: int = 4,
    executor: str = "thread",
    on_error_score: float = 0.0,
    raise_on_error: bool = False,
    timeout_s: float | None = None,
    stop_if_failed_fraction: float = 1.0,
    format_fn: str | None = None,
    format_weight: float = 0.1,
) -> BatchScorer:
    """`build_reward_scorer(pm, device=device, **cfg.reward)`; `.close()` it at the end of training."""
    if model_path:
        from core.rewards.reward_model import RewardModelScorer

        return RewardModelScorer.from_pretrained(model_path, device=device)
    fn = resolve_reward_fn(reward_fn, pm)
    if format_fn:  # e.g. reward_fn=reasoning_gym format_fn=format_number: correctness plus a format bonus
        from core.rewards.format_reward import WithFormatBonus

        fn = WithFormatBonus(fn, resolve_reward_fn(format_fn, pm), format_weight)
    return RewardScorer(fn, workers=workers, executor=executor, error_score=on_error_score,
                        raise_on_error=raise_on_error, timeout_s=timeout_s,
                        stop_if_failed_fraction=stop_if_failed_fraction)
