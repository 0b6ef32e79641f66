"""The RL training loop, readable top to bottom: sample prompts, roll out, score, estimate
advantages, update the policy, log. Which engine, sharding manager and rewards it uses is decided by
plugins and config; the loop itself never names a backend.
"""

from __future__ import annotations

import logging
import time
from contextlib import closing, contextmanager
from dataclasses import replace

import torch
from tqdm.auto import tqdm
from omegaconf import DictConfig

from core.agent.builtin_tools import agent_engine
from core.algorithms.kl import make_kl_controller
from core.algorithms.rollout_correction import mismatch_metrics
from core.algorithms.spec import AlgorithmSpec
from core.distributed.devices import use_cpu_threads
from core.plugins.manager import get_plugin_manager, load_backend
from core.report import start_and_end
from core.rewards.build import build_reward_scorer
from core.rl.evaluate import validate
from core.rollout.base import SamplingParams
from core.tracking.progress import Heartbeat
from core.eval.in_run import RunEvaluation
from core.trainer.actor import behaviour_logprobs_from_update
from core.errors import RunDied
from core.run.health import CollapseWatch, NonFiniteGuard, rewards_vary_within_groups
from core.rl.experience import ExperienceSettings, collect_experience
from core.rl.stages import scored_batch, with_advantages, with_logprobs
from core.run.session import RunSession
from core.trainer.setup import load_tokenizer, logits_width, make_prompt_source, resolve_device
from core.workers.launch import make_worker_group

log = logging.getLogger("tandem")


def train(cfg: DictConfig) -> dict[str, float]:
    """Run `cfg.trainer.total_steps` RL steps; returns the summary (first/last reward...)."""
    spec = AlgorithmSpec.from_config(cfg.algorithm, cfg.rollout.max_tokens)
    on_policy = behaviour_logprobs_from_update(cfg.trainer, spec)
    pm = get_plugin_manager()
    torch.manual_seed(cfg.trainer.seed)
    device = resolve_device(cfg.trainer.device, load_backend(cfg.backend.name))
    use_cpu_threads(device)
    model_dir, tokenizer = load_tokenizer(cfg.model)
    prompts_source, val_dataset = make_prompt_source(cfg.data, tokenizer)
    kl_controller = make_kl_controller(cfg.algorithm.kl_coef, cfg.algorithm.kl_target, cfg.algorithm.kl_horizon)
    params = SamplingParams(
        n=cfg.rollout.n, temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p,
        top_k=cfg.rollout.top_k, max_tokens=cfg.rollout.max_tokens, stop=tuple(cfg.rollout.stop),
        # old log-probs come from the trainer's own forward (step 2 below); the engine's only measure
        # and correct the mismatch between the two
        logprobs=cfg.rollout.logprobs or spec.needs_rollout_logprobs,
    )
    experience_settings = ExperienceSettings.from_config(cfg)
    val_params = SamplingParams(
        n=1, temperature=cfg.trainer.val_temperature, max_tokens=cfg.rollout.max_tokens, logprobs=False,
        stop=tuple(cfg.rollout.stop),
    )

    guard = NonFiniteGuard(cfg.trainer.on_nonfinite, cfg.trainer.max_nonfinite_steps)
    collapse = CollapseWatch(logits_width(model_dir))
    session = RunSession(cfg, with_samples=True)
    with session:  # run dir, tracker, sample log, SIGTERM, checkpoints; closed in reverse, on success and error
        scorer = build_reward_scorer(pm, device=str(device), **cfg.reward)
        session.callback(scorer.close)
        # the workers: policy, reference, critic and rollout engine on every device (one, in-process)
        workers = make_worker_group(cfg)
        session.callback(workers.close)
        engine = agent_engine(workers, cfg.agent, tokenizer, pm)  # with agent.tools: multi-turn conversations on it

        def validation_metrics() -> dict[str, float]:
            return validate(engine, val_dataset, scorer, val_params, tokenizer)
        first_step, loop_state = session.resume(workers)
        if loop_state:
            prompts_source.load_state_dict(loop_state["prompts"])
            kl_controller.value = loop_state["kl_coef"]

        def validation_due(step: int) -> bool:
            freq = cfg.trainer.test_freq
            last = step == cfg.trainer.total_steps
            return val_dataset is not None and freq > 0 and (step % freq == 0 or last)

        evaluation = RunEvaluation.for_run(cfg, tokenizer, session.run_dir)  # held-out and shifted, before and after
        steps = range(first_step, cfg.trainer.total_steps + 1)
        # the bar's note names the phase running; piped to a file, a line when one runs long (Heartbeat)
        progress = session.enter_context(closing(Heartbeat(tqdm(steps, desc="training", unit="step", disable=None))))
        before = {}
        if evaluation is not None and not evaluation.has_base:
            with _timed({}, "eval", progress), workers.rollout():
                before.update(evaluation.run("base", engine, tokenizer, step=0))
        if val_dataset is not None and cfg.trainer.val_before_train:
            with _timed({}, "val", progress), workers.rollout():
                before.update(validation_metrics())
        if before:
            session.log(before, step=0)
        history = []
        session.preemption.begin_steps()
        for step in progress:
            timings: dict[str, float] = {}
            with _timed(timings, "step"), _named_step(step):
                # 1. rollout: the engine gets the current weights, samples n responses per prompt, scored
                with _timed(timings, "gen", progress), workers.rollout():
                    experience = collect_experience(engine, prompts_source, scorer, tokenizer, params,
                                                    experience_settings, spec)
                timings["sync"] = workers.wake_seconds  # the part of gen spent waking + loading weights
                batch = scored_batch(experience, tokenizer.pad_token_id, on_policy)
                # 2. behaviour and reference log-probs (and values) under the trainer's own numerics;
                # an on-policy update scores the batch itself (old = new, detached): no pass of its own
                with _timed(timings, "logprob", progress):
                    batch, entropy = with_logprobs(batch, workers, spec)
                # 3. advantages (after the KL penalty, where the algorithm puts it in the reward), then the update
                batch, kl_metrics = with_advantages(batch, cfg.algorithm, spec, kl_controller,
                                                    experience.baseline_scores)
                with _timed(timings, "update", progress):
                    update = workers.update(batch)
                update_metrics = update.metrics
                if on_policy:  # the update's forward scored the batch: what the health checks and logs read
                    batch, entropy = replace(batch, old_logprobs=update.logprobs), update.entropy

            metrics = _step_metrics(
                batch, entropy, timings, experience.metrics, kl_metrics, update_metrics, workers.memory_stats()
            )
            if validation_due(step):
                with _timed(metrics, "timing/val", progress), workers.rollout():
                    metrics.update(validation_metrics())
            if evaluation is not None and step == cfg.trainer.total_steps:
                with _timed(metrics, "timing/eval", progress), workers.rollout():
                    metrics.update(evaluation.run("final", engine, tokenizer, step=step))
            died = guard.check({
                ("rollout", "reward"): batch.scores,
                ("logprob", "log-prob"): batch.old_logprobs[batch.response_mask],
                ("logprob", "reference log-prob"): None if batch.ref_logprobs is None else batch.ref_logprobs[batch.response_mask],
                ("update", "loss"): update_metrics.get("actor/pg_loss"),
                ("update", "gradient norm"): update_metrics.get("actor/grad_norm"),
            })
            metrics["health/skipped_steps"] = float(guard.skipped)
            session.log(metrics, step)  # logged before a stop, so the file shows the values that died
            session.samples.log(step, experience.output, batch.scores, tokenizer)
            if died:
                raise RunDied(f"step {step}: {died}")
            collapsed = collapse.check(step, metrics["actor/entropy"], update_metrics.get("actor/grad_norm"),
                                       rewards_vary_within_groups(batch.scores, batch.group_ids.cpu()))
            if collapsed and cfg.trainer.on_collapse == "stop":
                raise RunDied(f"{collapsed}; the run stopped (trainer.on_collapse=warn goes on)")
            if collapsed:  # on_collapse=warn
                collapse.warn_once("collapse", collapsed)
            history.append(metrics)
            session.checkpoint_if_due(step, workers, lambda: {"prompts": prompts_source.state_dict(),
                                                              "kl_coef": kl_controller.value})
        summary = _summary(history)
        if evaluation is not None:
            evaluation.record_health([m["actor/entropy"] for m in history])
            summary["eval"] = evaluation.table()
        session.finish(workers, summary)
    return session.write_report(summary)


@contextmanager
def _named_step(step: int):
    """A run that dies inside a step says which step."""
    try:
        yield
    except RunDied as exc:
        raise RunDied(f"step {step}: {exc}") from None


@contextmanager
def _timed(timings: dict[str, float], phase: str, progress=None):
    """Add the block's seconds to timings[phase]; show the phase on the progress bar, if given."""
    if progress is not None:
        progress.set_postfix_str(phase.removeprefix("timing/"))
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
        "perf/tokens": tokens,  # prompt + response tokens of the batch (benchmarks/update_mfu.py)
        "perf/tokens_per_s": tokens / max(timings["step"], 1e-9),
    }
    if batch.rollout_logprobs is not None:
        metrics.update(mismatch_metrics(batch.old_logprobs, batch.rollout_logprobs, mask))
    if batch.ref_logprobs is not None:  # k1 estimate of KL(policy || reference) on the sampled tokens
        metrics["actor/kl"] = ((batch.old_logprobs - batch.ref_logprobs) * mask).sum().item() / max(mask.sum().item(), 1)
    for part in parts:
        metrics.update(part)
    return metrics


def _summary(history: list[dict[str, float]]) -> dict:
    """Reward at the start and end (`start_and_end`: the report's definition too)."""
    reward_start, reward_end = start_and_end([m["reward/mean"] for m in history])
    summary = {
        "steps": len(history),
        "reward_start": reward_start,
        "reward_end": reward_end,
        "wall_s": sum(m["timing/step"] for m in history),
    }
    validations = [m["val/reward"] for m in history if "val/reward" in m]
    if validations:
        summary["val_reward_end"] = validations[-1]
    return summary
