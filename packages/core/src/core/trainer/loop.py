"""The RL training loop, readable top to bottom: sample prompts, roll out, score, estimate
advantages, update the policy, log. Which engine, sharding manager and rewards it uses is decided by
plugins and config; the loop itself never names a backend.
"""

from __future__ import annotations

import copy
import logging
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm.auto import tqdm
from omegaconf import DictConfig, OmegaConf

from core.algorithms.advantages import compute_advantages
from core.algorithms.kl import apply_kl_in_reward, make_kl_controller
from core.errors import TandemError
from core.plugins.manager import get_plugin_manager
from core.rewards.scoring import RewardScorer, resolve_reward_fn, reward_inputs
from core.rollout.base import SamplingParams
from core.trainer.actor import Actor
from core.trainer.batch import batch_from_rollout, last_token_rewards
from core.trainer.setup import load_policy, make_prompt_source, resolve_device
from core.tracking.tracker import Tracker

log = logging.getLogger("tandem")


def train(cfg: DictConfig) -> dict[str, float]:
    """Run `cfg.trainer.total_steps` RL steps; returns the summary (first/last reward...)."""
    pm = get_plugin_manager()
    backend = cfg.backend.name
    torch.manual_seed(cfg.trainer.seed)
    run_dir = Path(cfg.trainer.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    device = resolve_device(cfg.trainer.device)
    model_dir, tokenizer, policy = load_policy(cfg.model, device)
    reference = copy.deepcopy(policy).eval().requires_grad_(False) if cfg.algorithm.kl_placement != "none" else None
    actor = Actor(policy, cfg.algorithm, cfg.trainer, max_response_len=cfg.rollout.max_tokens)
    prompts_source = make_prompt_source(cfg.data, tokenizer)
    scorer = RewardScorer(resolve_reward_fn(cfg.data.reward_fn, pm), workers=1)
    kl_controller = make_kl_controller(cfg.algorithm.kl_coef, cfg.algorithm.kl_target, cfg.algorithm.kl_horizon)
    params = SamplingParams(
        n=cfg.rollout.n, temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p,
        top_k=cfg.rollout.top_k, max_tokens=cfg.rollout.max_tokens,
    )

    engine = pm.hook.tandem_make_rollout_engine(backend=backend, cfg=cfg, model_dir=model_dir)
    if engine is None:
        raise TandemError(f"backend '{backend}' provides no rollout engine")
    tracker = Tracker(
        list(cfg.trainer.loggers), run_dir, OmegaConf.to_container(cfg, resolve=True),
        console_every=cfg.trainer.log_every,
    )
    try:
        sharding = pm.hook.tandem_make_sharding_manager(backend=backend, cfg=cfg, engine=engine, trainer_model=policy)
        history = []
        for step in tqdm(range(1, cfg.trainer.total_steps + 1), desc="training", unit="step", disable=None):
            timings: dict[str, float] = {}
            with _timed(timings, "step"):
                # 1. rollout: the engine gets the current weights, samples n responses per prompt
                items = prompts_source.next_batch(cfg.data.prompt_batch_size)
                with _timed(timings, "gen"), sharding:
                    out = engine.generate([item.prompt_ids for item in items], params)
                batch = batch_from_rollout(out, tokenizer.pad_token_id)

                # 2. rewards
                rewards = scorer.score(reward_inputs(items, out, tokenizer))
                batch.scores = rewards.scores
                batch.token_rewards = last_token_rewards(rewards.scores, batch.response_mask)

                # 3. behaviour and reference log-probs under the trainer's own numerics
                with _timed(timings, "logprob"):
                    batch.old_logprobs, entropy = actor.compute_logprobs(batch)
                    if reference is not None:
                        batch.ref_logprobs, _ = actor.compute_logprobs(batch, model=reference)
                kl_metrics = {}
                if cfg.algorithm.kl_placement == "reward":
                    penalized = apply_kl_in_reward(
                        batch.token_rewards, batch.old_logprobs, batch.ref_logprobs, batch.response_mask,
                        kl_controller, cfg.algorithm.kl_estimator,
                    )
                    batch.token_rewards = penalized.token_rewards
                    kl_metrics = {"actor/kl": penalized.mean_kl, "actor/kl_coef": penalized.coef}

                # 4. advantages and the policy update
                batch.advantages, batch.returns = compute_advantages(
                    cfg.algorithm.adv_estimator, token_rewards=batch.token_rewards,
                    response_mask=batch.response_mask, group_ids=batch.group_ids,
                    gamma=cfg.algorithm.gamma, lam=cfg.algorithm.lam,
                )
                with _timed(timings, "update"):
                    update_metrics = actor.update(batch)

            metrics = _step_metrics(batch, entropy, timings, rewards.metrics, kl_metrics, update_metrics)
            tracker.log(metrics, step)
            history.append(metrics)
        summary = _summary(history)
        if cfg.trainer.save_model:
            final_dir = run_dir / "final"
            policy.save_pretrained(final_dir, safe_serialization=True)
            tokenizer.save_pretrained(final_dir)
            summary["final_model"] = str(final_dir)
        return summary
    finally:
        tracker.close()
        scorer.close()
        engine.close()


@contextmanager
def _timed(timings: dict[str, float], phase: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[phase] = timings.get(phase, 0.0) + time.perf_counter() - start


def _step_metrics(batch, entropy, timings, *parts: dict[str, float]) -> dict[str, float]:
    mask = batch.response_mask
    lengths = mask.sum(-1).float()
    tokens = int(mask.sum()) + int(batch.attention_mask[:, : batch.prompt_len].sum())
    metrics = {
        "reward/mean": batch.scores.mean().item(),
        "reward/max": batch.scores.max().item(),
        "response_length/mean": lengths.mean().item(),
        "actor/entropy": (entropy * mask).sum().item() / max(mask.sum().item(), 1),
        **{f"timing/{phase}": seconds for phase, seconds in timings.items()},
        "perf/tokens_per_s": tokens / max(timings["step"], 1e-9),
    }
    if batch.ref_logprobs is not None and "actor/kl" not in metrics:
        metrics["actor/kl"] = ((batch.old_logprobs - batch.ref_logprobs) * mask).sum().item() / max(mask.sum().item(), 1)
    for part in parts:
        metrics.update(part)
    return metrics


def _summary(history: list[dict[str, float]]) -> dict[str, float]:
    """Reward at the start and end, each averaged over a tenth of the run to smooth sampling noise."""
    window = max(1, len(history) // 10)
    first = sum(m["reward/mean"] for m in history[:window]) / window
    last = sum(m["reward/mean"] for m in history[-window:]) / window
    return {
        "steps": len(history),
        "reward_start": first,
        "reward_end": last,
        "wall_s": sum(m["timing/step"] for m in history),
    }
