"""The SFT optimizer step on one rank: micro-batches, assistant-token loss, clipping, LR schedule.

With `trainer.remove_padding` each micro-batch runs packed (core.distributed.packing, the same
padding-free forward as RL's) and its token budget counts real tokens instead of padded ones.

On several ranks the model is sharded with core.distributed's FSDP2 engine and every rank
normalises by the assistant-token count of the whole step (all ranks together); FSDP sums the
gradients over ranks, so the result equals the single-process gradient of the same batch.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.distributed as dist

from core.checkpoint.manager import Trainable
from core.distributed.batching import balance_rows
from core.distributed.collectives import world
from core.distributed.fsdp import FSDPSettings, device_mesh, shard_model
from core.distributed.packing import IGNORE, packed_token_logprobs
from core.trainer.optimizer_step import optimizer_step
from core.trainer.optimizers import make_optimizer
from core.trainer.precision import TrainingPrecision
from core.trainer.schedule import lr_scheduler
from core.trainer.setup import DTYPES
from core.trainer.token_budget import MemoryTokenBudget, sized_update, sizing_hint
from sft.batching import MicroBatch, micro_batches
from sft.dataset import SFTExample
from sft.loss import sft_loss_sum

CPU_MICRO_BATCH_TOKENS = 4096  # `trainer.micro_batch_tokens: null` on a CPU: the demo's size


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if world()[1] > 1:
        dist.all_reduce(tensor)
    return tensor.tolist()


def micro_loss_sum(model: torch.nn.Module, micro: MicroBatch, packed: bool) -> tuple[torch.Tensor, int]:
    """(summed assistant-token loss, labelled tokens) of one micro-batch, by the packed (padding-free)
    forward or the padded one; both give the same numbers."""
    if packed:
        logprobs, _ = packed_token_logprobs(model, micro.input_ids, micro.attention_mask, micro.labels)
        return -logprobs.sum(), int((micro.labels != IGNORE).sum())
    logits = model(input_ids=micro.input_ids, attention_mask=micro.attention_mask).logits
    return sft_loss_sum(logits, micro.labels)


class SFTTrainer:
    """Owns the model being trained (FSDP2-sharded with fp32 master weights on several ranks; on one device
    in `precision`'s dtypes), its AdamW optimizer and LR schedule (linear warm-up, then constant or cosine)."""

    def __init__(self, model: torch.nn.Module, trainer_cfg, pad_token_id: int, *, packed: bool,
                 compute_dtype: str = "float32", precision: TrainingPrecision | None = None):
        self.cfg = trainer_cfg
        self.packed = packed  # `trainer.remove_padding` resolved for the device (the worker's)
        self.precision = precision or TrainingPrecision(next(model.parameters()).dtype)
        self.pad_token_id = pad_token_id
        self.device = next(model.parameters()).device
        self.rank, self.world_size = world()
        if self.world_size > 1:
            settings = FSDPSettings(compute_dtype=DTYPES[compute_dtype], cpu_offload=trainer_cfg.cpu_offload)
            shard_model(model, device_mesh(self.device), settings)
        self.model = model
        self.optimizer = make_optimizer(model.parameters(), trainer_cfg.get("optimizer", "adamw"), trainer_cfg.lr,
                                        trainer_cfg.weight_decay)
        self.scheduler = lr_scheduler(self.optimizer, trainer_cfg.warmup_steps, trainer_cfg.total_steps,
                                      trainer_cfg.lr_schedule, trainer_cfg.min_lr_ratio)
        # null on a GPU: sized from free memory, re-measured by every step
        self.token_budget = MemoryTokenBudget.for_setting(trainer_cfg.micro_batch_tokens, model)

    def checkpointable(self) -> Trainable:
        return Trainable(self.model, self.optimizer, self.scheduler)

    def local_share(self, examples: Sequence[SFTExample]) -> list[SFTExample]:
        """This rank's rows, balanced by tokens over the ranks (every rank gets one if there are enough)."""
        if self.world_size == 1:
            return list(examples)
        parts = balance_rows([len(e.input_ids) for e in examples], self.world_size)
        return [examples[i] for i in parts[self.rank]]

    def _micro_batches(self, examples: Sequence[SFTExample]):
        local = self.local_share(examples)
        # a rank left without rows still joins every forward (FSDP), on a zero-weight stand-in
        shaped = local or list(examples[:1])
        padded = not self.packed
        batches = micro_batches(shaped, self.micro_batch_tokens(), self.pad_token_id, padded=padded)
        if self.token_budget:  # what each costs: rows x padded length, or the real tokens packed
            self.token_budget.planned([int(b.input_ids.numel() if padded else b.attention_mask.sum()) for b in batches])
        return batches if local else [b.select(torch.arange(b.input_ids.shape[0]), weight=0.0) for b in batches]

    def micro_batch_tokens(self) -> int:
        if self.token_budget:
            return self.token_budget.tokens
        return CPU_MICRO_BATCH_TOKENS if self.cfg.micro_batch_tokens is None else self.cfg.micro_batch_tokens

    def _loss_sum(self, micro: MicroBatch) -> tuple[torch.Tensor, int]:
        with self.precision.compute(self.device):
            summed, count = micro_loss_sum(self.model, micro.to(self.device), packed=self.packed)
        return summed * micro.weight, int(count * micro.weight)

    def train_step(self, examples: Sequence[SFTExample]) -> dict[str, float]:
        """One optimizer step over the step's batch `examples` (all ranks pass the same list)."""
        self.model.train()
        sizing = lambda: sizing_hint(self.token_budget, "trainer.micro_batch_tokens", self.micro_batch_tokens())  # noqa: E731
        with sized_update(self.token_budget, "SFT step", sizing):
            batches = self._micro_batches(examples)
            real_tokens = sum(int(b.attention_mask.sum()) for b in batches if b.weight)
            total_tokens, input_tokens = all_reduce_sum([sum(b.num_loss_tokens for b in batches), real_tokens],
                                                        self.device)
            self.optimizer.zero_grad(set_to_none=True)
            loss_sum = 0.0
            for micro in batches:
                summed, _ = self._loss_sum(micro)
                (summed / max(total_tokens, 1)).backward()
                loss_sum += summed.item()
        stepped = optimizer_step(self.model, self.optimizer, self.cfg.grad_clip, self.scheduler)
        (loss_total,) = all_reduce_sum([loss_sum], self.device)
        budget = {"perf/micro_batch_tokens": float(self.token_budget.tokens)} if self.token_budget else {}  # the next step's
        return {
            **budget,
            "train/loss": loss_total / max(total_tokens, 1),
            "train/grad_norm": stepped["grad_norm"],
            "train/lr": stepped["lr"],
            "train/tokens": total_tokens,  # assistant (loss) tokens
            "train/input_tokens": input_tokens,  # every real token the forward ran on (MFU counts these)
            "train/micro_batches": len(batches),
        }

    @torch.no_grad()
    def eval_loss(self, examples: Sequence[SFTExample]) -> float:
        """Mean assistant-token loss over `examples`, the work split over the ranks."""
        self.model.eval()
        loss_sum, tokens = 0.0, 0
        for micro in self._micro_batches(examples):
            summed, count = self._loss_sum(micro)
            loss_sum, tokens = loss_sum + summed.item(), tokens + count
        total_loss, total_tokens = all_reduce_sum([loss_sum, float(tokens)], self.device)
        return total_loss / max(total_tokens, 1)
