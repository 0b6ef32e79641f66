"""Worker groups: the controller's handle on all workers, dispatching by data-parallel rank.

The loop calls one group method per phase; the group splits the work (prompts for generation;
token-balanced rows, a prompt's rows together, for log-probs and updates), runs it on every rank and
gathers the results in the controller's order. `InProcessWorkerGroup` holds one worker in this process (the fast CPU
demo); `core.workers.ray_group.RayWorkerGroup` holds one Ray actor per GPU (`core.workers.launch` picks). Both build any worker
class (RL's TrainWorker by default; SFT passes its SFTWorker) and `run_all` calls a method of it on
every rank, so other loops drive their own workers through the same launchers.
"""

from __future__ import annotations

import time

from contextlib import contextmanager
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from core.distributed.batching import data_parallel_rows, row_lengths
from core.errors import TandemError
from core.rollout.base import RolloutOutput, SamplingParams
from core.trainer.actor import UpdateResult
from core.trainer.batch import AdvantageBatch, TrainingBatch, in_batch_order
from core.workers.base import import_worker

TRAIN_WORKER = "core.workers.worker:TrainWorker"


class WorkerGroup:
    """Subclasses provide `world_size` and `_run(method, per_rank_args)` -> per-rank results."""

    world_size: int = 1
    pad_token_id: int = 0

    def _run(self, method: str, per_rank_args: Sequence[tuple]) -> list[Any]:
        raise NotImplementedError

    def run_all(self, method: str, *args) -> list[Any]:
        """`worker.method(*args)` on every rank; the results in rank order."""
        return self._run(method, [args] * self.world_size)

    # rollout: the group is the loop's rollout engine
    @contextmanager
    def rollout(self):
        """All engines awake and holding the current weights inside the block."""
        start = time.perf_counter()
        self.run_all("wake")
        self.wake_seconds = time.perf_counter() - start  # waking + weight sync, for timing/sync
        try:
            yield self
        finally:
            self.run_all("sleep")

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> RolloutOutput:
        """Contiguous shares of the prompts to each rank's engine; outputs concatenated in order."""
        shares = [share.tolist() for share in torch.tensor_split(torch.arange(len(prompts)), self.world_size)]
        outputs = self._run("generate", [([prompts[i] for i in share], params) for share in shares])
        return concat_outputs([(out, share[0]) for out, share in zip(outputs, shares) if out is not None],
                              self.pad_token_id)

    # training: rows balanced by tokens over ranks, each prompt's group on one rank where groups split evenly
    def compute_logprobs(self, batch: TrainingBatch) -> tuple[torch.Tensor, torch.Tensor]:
        return self._dispatch_rows("compute_logprobs", batch)

    def compute_ref_logprobs(self, batch: TrainingBatch) -> torch.Tensor:
        return self._dispatch_rows("compute_ref_logprobs", batch)

    def compute_values(self, batch: TrainingBatch) -> torch.Tensor:
        return self._dispatch_rows("compute_values", batch)

    def update(self, batch: AdvantageBatch) -> UpdateResult:
        """Every rank reports the same (all-reduced) metrics: rank 0's are returned, with the on-policy
        log-probs and entropies of all ranks in batch order (when the update produced them)."""
        shares = self._shares(batch)
        results = self._run("update", [(batch.select(rows),) for rows in shares])
        merged = UpdateResult(results[0].metrics)
        if results[0].logprobs is not None:
            merged.logprobs = in_batch_order(shares, [r.logprobs for r in results], batch.rows)
            merged.entropy = in_batch_order(shares, [r.entropy for r in results], batch.rows)
        return merged

    def memory_stats(self) -> dict[str, float]:
        """Each `memory/*` figure at its highest over the ranks (the rank that runs out first)."""
        per_rank = self.run_all("memory_stats")
        return {key: max(stats[key] for stats in per_rank) for key in per_rank[0]}

    def save_checkpoint(self, root: str, step: int, trainer_state: dict) -> str:
        return self.run_all("save_checkpoint", root, step, trainer_state)[0]

    def load_checkpoint(self, path: str) -> dict:
        return self.run_all("load_checkpoint", path)[0]

    def save_model(self, out_dir: str) -> None:
        self.run_all("save_model", out_dir)

    def close(self) -> None:
        self.run_all("close")

    def _shares(self, batch: TrainingBatch) -> list[torch.Tensor]:
        if batch.rows % self.world_size:
            raise TandemError(
                f"{batch.rows} rows cannot be split evenly over {self.world_size} data-parallel workers: "
                "make data.prompt_batch_size * rollout.n a multiple of trainer.nnodes * trainer.n_gpus_per_node"
            )
        parts = data_parallel_rows(row_lengths(batch.attention_mask), batch.group_ids.tolist(), self.world_size)
        return [torch.tensor(part, dtype=torch.long) for part in parts]

    def _dispatch_rows(self, method: str, batch: TrainingBatch):
        shares = self._shares(batch)
        results = self._run(method, [(batch.select(rows),) for rows in shares])
        if isinstance(results[0], tuple):
            return tuple(in_batch_order(shares, [r[i] for r in results], batch.rows) for i in range(len(results[0])))
        return in_batch_order(shares, results, batch.rows)


class InProcessWorkerGroup(WorkerGroup):
    """One worker in the controller's process: the single-device path (or this process's rank when
    torchrun started several, each driving its own worker)."""

    def __init__(self, cfg, worker: str = TRAIN_WORKER, *worker_args):
        self.worker = import_worker(worker)(cfg, *worker_args)
        self.pad_token_id = self.worker.tokenizer.pad_token_id

    def _run(self, method: str, per_rank_args: Sequence[tuple]) -> list[Any]:
        return [getattr(self.worker, method)(*per_rank_args[0])]


def concat_outputs(outputs: list[tuple[RolloutOutput, int]], pad_token_id: int) -> RolloutOutput:
    """Join per-rank outputs (each with the index of its first prompt), re-padding to the longest response;
    every optional part (log-probs, finished, a multi-turn row's context mask and last-turn start) kept."""
    width = max(out.response_ids.shape[1] for out, _ in outputs)
    parts = [out for out, _ in outputs]

    def joined(name: str, pad_value=None) -> torch.Tensor | None:
        tensors = [getattr(out, name) for out in parts]
        if any(t is None for t in tensors):
            return None
        if pad_value is not None:
            tensors = [F.pad(t, (0, width - t.shape[1]), value=pad_value) for t in tensors]
        return torch.cat(tensors)

    return RolloutOutput(
        prompt_ids=[ids for out in parts for ids in out.prompt_ids],
        response_ids=joined("response_ids", pad_token_id),
        response_logprobs=joined("response_logprobs", 0.0),
        response_mask=joined("response_mask", False),
        group_ids=torch.cat([out.group_ids + first for out, first in outputs]),
        finished=joined("finished"),
        context_mask=joined("context_mask", False),
        final_turn_start=joined("final_turn_start"),
    )
