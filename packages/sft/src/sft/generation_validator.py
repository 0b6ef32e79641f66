"""Validation by generation: every rank generates for its share of the prompts in one batched call,
scores it, and the records are gathered in dataset order; plus the validation loss.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch.distributed as dist

from core.rewards.scoring import BatchScorer, reward_inputs
from core.rollout.base import SamplingParams
from sft.dataset import SFTExample
from sft.engine import ValidationEngine
from core.distributed.collectives import world
from sft.trainer import SFTTrainer

log = logging.getLogger("tandem")


@dataclass
class ValidationRecord:
    prompt: str
    generation: str
    reference: str
    score: float | None  # None when the dataset names no reward function
    response_tokens: int
    finished: bool  # stopped by EOS / a stop token rather than max_tokens
    rank: int  # which data-parallel rank generated it


def shard_slice(count: int, rank: int, world_size: int) -> slice:
    """Contiguous share of `count` items; the first `count % world_size` ranks take one more.

    count 5, world 2 -> rank 0: [0, 3), rank 1: [3, 5).
    """
    base, extra = divmod(count, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def gather_in_order(local: list[Any]) -> list[Any]:
    """Every rank's list, concatenated in rank order (so contiguous shards come back in dataset order)."""
    _, world_size = world()
    if world_size == 1:
        return list(local)
    parts: list[list[Any]] = [None] * world_size  # type: ignore[list-item]
    dist.all_gather_object(parts, local)
    return [item for part in parts for item in part]


class Validator:
    """Generates for `examples` with `engine`, scores with `scorer` (or not), logs a few samples."""

    def __init__(self, examples: Sequence[SFTExample], engine: ValidationEngine, tokenizer, params: SamplingParams,
                 scorer: BatchScorer | None, run_dir: Path, log_samples: int = 1):
        self.examples = list(examples)
        self.engine = engine
        self.tokenizer = tokenizer
        self.params = params
        self.scorer = scorer
        self.out_dir = run_dir / "validation"
        self.log_samples = log_samples

    def generate_and_score(self) -> tuple[list[ValidationRecord], dict[str, float]]:
        """All ranks' records in dataset order, and this rank's timings."""
        rank, world_size = world()
        local = self.examples[shard_slice(len(self.examples), rank, world_size)]
        generation = self.engine.generate([e.prompt_ids for e in local], self.params)
        out = generation.output
        responses = self.tokenizer.batch_decode(out.responses(), skip_special_tokens=True)
        scores = self.scorer.score(reward_inputs(local, out, self.tokenizer)).scores.tolist() if self.scorer and local else None
        records = [
            ValidationRecord(e.prompt_text, response, e.reference, None if scores is None else scores[i],
                             int(out.response_lengths[i]), bool(out.finished[i]), rank)
            for i, (e, response) in enumerate(zip(local, responses))
        ]
        timings = {"timing/val_weight_sync": generation.sync_s, "timing/val_generate": generation.generate_s}
        return gather_in_order(records), timings

    def run(self, step: int, trainer: SFTTrainer) -> dict[str, float]:
        """Validation metrics for `step` (the same on every rank); rank 0 logs samples and writes them."""
        records, timings = self.generate_and_score()
        metrics = {
            "val/loss": trainer.eval_loss(self.examples),
            "val/response_length": sum(r.response_tokens for r in records) / max(len(records), 1),
            "val/finished_ratio": sum(r.finished for r in records) / max(len(records), 1),
            "val/fallback_engine": float(self.engine.fallback_reason is not None),
            **timings,
        }
        # the generation is the reference answer, exactly (what a scored task's reward may only approximate)
        metrics["val/exact_match"] = sum(r.generation.strip() == r.reference.strip() for r in records) / max(len(records), 1)
        if self.scorer is not None:
            metrics["val/reward"] = sum(r.score for r in records) / max(len(records), 1)
        if world()[0] == 0:
            self._report(step, records, metrics)
        return metrics

    def _report(self, step: int, records: list[ValidationRecord], metrics: dict[str, float]) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / f"step_{step:06d}.jsonl", "w") as f:
            for record in records:
                f.write(json.dumps(asdict(record)) + "\n")
        score = f", reward {metrics['val/reward']:.3f}" if "val/reward" in metrics else ""
        score += f", exact match {metrics['val/exact_match']:.3f}"
        log.info("validation @ step %d: loss %.4f%s (%d prompts, generated in %.2f s after a %.3f s weight push)",
                 step, metrics["val/loss"], score, len(records), metrics["timing/val_generate"],
                 metrics["timing/val_weight_sync"])
        for record in records[: self.log_samples]:  # all of them are in the step's file
            log.info("  e.g. prompt %r -> generation %r | reference %r%s (all: %s)", _short(record.prompt),
                     _short(record.generation), _short(record.reference),
                     "" if record.score is None else f" | score {record.score:.2f}",
                     self.out_dir / f"step_{step:06d}.jsonl")


def _short(text: str, limit: int = 80) -> str:
    """A sample as one readable line: an untrained model's reply is often long noise."""
    return text if len(text) <= limit else text[:limit] + "..."
