"""One step's experience: prompts -> sampled responses -> scores, with the algorithm's extras
(DAPO's dynamic sampling and over-long penalty, ReMax's greedy baseline).

Call it inside the sharding manager's context, so every generation sees the current weights.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from core.algorithms.spec import AlgorithmSpec
from core.algorithms.dapo import DynamicSamplingAccumulator, overlong_penalty
from core.config.schema import AlgorithmConfig
from core.data.base import PromptItem
from core.rewards.scoring import reward_inputs
from core.rollout.base import RolloutOutput, Sampler, SamplingParams


@dataclass
class Experience:
    output: RolloutOutput  # [rows] prompt-major samples (rows of one group are contiguous)
    scores: torch.Tensor  # [rows] reward of each response (penalties included)
    baseline_scores: torch.Tensor | None  # [rows] ReMax: the greedy response's reward for the row's prompt
    metrics: dict[str, float]


@dataclass(frozen=True)
class ExperienceSettings:
    """The keys `collect_experience` reads, from three config groups (`from_config`)."""

    prompt_batch_size: int  # data.prompt_batch_size: the groups (prompts) a step trains on
    max_tokens: int  # rollout.max_tokens: where DAPO's over-long penalty ends
    expand_prompts: bool = False  # rollout.expand_prompts: n copies of each prompt, each sampled once
    dynamic_sampling: bool = False  # algorithm.dynamic_sampling: DAPO's, keep groups whose rewards differ
    max_sampling_tries: int = AlgorithmConfig.max_sampling_tries  # batches drawn before training on fewer groups
    overlong_buffer: int = 0  # algorithm.overlong_buffer: tokens before max_tokens where the penalty ramps up
    overlong_penalty: float = AlgorithmConfig.overlong_penalty  # the penalty at max_tokens

    @classmethod
    def from_config(cls, cfg) -> "ExperienceSettings":
        algo = cfg.algorithm
        return cls(prompt_batch_size=int(cfg.data.prompt_batch_size), max_tokens=int(cfg.rollout.max_tokens),
                   expand_prompts=bool(cfg.rollout.expand_prompts), dynamic_sampling=bool(algo.dynamic_sampling),
                   max_sampling_tries=int(algo.max_sampling_tries), overlong_buffer=int(algo.overlong_buffer),
                   overlong_penalty=float(algo.overlong_penalty))


def collect_experience(engine: Sampler, source, scorer, tokenizer, params: SamplingParams,
                       settings: ExperienceSettings, spec: AlgorithmSpec) -> Experience:
    """Sample `settings.prompt_batch_size` groups (with DAPO: informative ones only) and score them."""
    batch_size = settings.prompt_batch_size
    if not settings.dynamic_sampling:
        items = source.next_batch(batch_size)
        output, scores, metrics = _sample_and_score(engine, items, scorer, tokenizer, params, settings)
        baseline = _greedy_baseline(engine, items, scorer, tokenizer, params, spec, output.group_ids)
        return Experience(output, scores, baseline, metrics)

    accumulator = DynamicSamplingAccumulator(target_groups=batch_size, max_tries=settings.max_sampling_tries)
    metrics: dict[str, float] = {}
    while not accumulator.done:
        items = source.next_batch(batch_size)
        output, scores, metrics = _sample_and_score(engine, items, scorer, tokenizer, params, settings)
        accumulator.add({**_row_pieces(output), "scores": scores}, scores=scores, group_ids=output.group_ids)
    kept, group_ids = accumulator.result()
    output = _output_from_pieces(kept, group_ids, tokenizer.pad_token_id)
    metrics.update({"dapo/sampling_tries": float(accumulator.tries), "dapo/kept_groups": float(accumulator.kept_groups)})
    return Experience(output, kept["scores"], None, metrics)


def _row_pieces(output: RolloutOutput) -> dict:
    """`output` row by row, each row cut to its real tokens (a multi-turn row: model and tool tokens, with
    its masks), so that rows of rollouts with different widths can be kept together."""
    lengths = output.real_mask.sum(-1).tolist()
    cut = lambda rows: [row[:n] for row, n in zip(rows, lengths)]  # noqa: E731
    pieces = {"prompt_ids": output.prompt_ids, "ids": cut(output.response_ids), "mask": cut(output.response_mask)}
    optional = {"finished": output.finished, "final_turn_start": output.final_turn_start,
                "context": None if output.context_mask is None else cut(output.context_mask),
                "logprobs": None if output.response_logprobs is None else cut(output.response_logprobs)}
    return {**pieces, **{name: value for name, value in optional.items() if value is not None}}


def _output_from_pieces(pieces: dict, group_ids: torch.Tensor, pad_token_id: int) -> RolloutOutput:
    width = max((len(row) for row in pieces["ids"]), default=0)

    def pad(name: str, value) -> torch.Tensor | None:
        rows = pieces.get(name)
        if rows is None:
            return None
        return torch.stack([torch.nn.functional.pad(row, (0, width - len(row)), value=value) for row in rows])

    return RolloutOutput(pieces["prompt_ids"], pad("ids", pad_token_id), pad("logprobs", 0.0), pad("mask", False),
                         group_ids, pieces.get("finished"), context_mask=pad("context", False),
                         final_turn_start=pieces.get("final_turn_start"))


def _sample_and_score(engine, items: list[PromptItem], scorer, tokenizer, params, settings: ExperienceSettings):
    if settings.expand_prompts:  # n copies of each prompt with n=1: the same rows, another schedule
        output = engine.generate([i.prompt_ids for i in items for _ in range(params.n)], replace(params, n=1))
        output.group_ids = torch.arange(len(items)).repeat_interleave(params.n)
    else:
        output = engine.generate([item.prompt_ids for item in items], params)
    rewards = scorer.score(reward_inputs(items, output, tokenizer))
    scores, metrics = rewards.scores, {**output.metrics, **rewards.metrics}  # the engine's (agent/*), the reward's
    metrics["reward/raw_mean"] = scores.mean().item()
    if settings.overlong_buffer > 0:
        penalty = overlong_penalty(
            output.response_lengths, settings.max_tokens, settings.overlong_buffer, settings.overlong_penalty)
        scores = scores + penalty
        metrics["dapo/overlong_penalty"] = penalty.mean().item()
    return output, scores, metrics


def _greedy_baseline(engine, items, scorer, tokenizer, params, spec, group_ids) -> torch.Tensor | None:
    """ReMax: each prompt's greedy response score, the baseline of that prompt's sampled rows."""
    if not spec.needs_greedy_baseline:
        return None
    greedy = engine.generate([item.prompt_ids for item in items], replace(params, n=1, temperature=0.0))
    return scorer.score(reward_inputs(items, greedy, tokenizer)).scores[group_ids]
