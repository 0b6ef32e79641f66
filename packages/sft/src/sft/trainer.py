"""The SFT optimizer step on one process of a data-parallel group: micro-batch, loss, clip, step.

On several ranks the model is wrapped in DistributedDataParallel and every rank normalises by the
assistant-token count of the whole step (all ranks together), so the summed gradient equals the
single-process one.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Sequence

import torch
import torch.distributed as dist

from sft.batching import micro_batches
from sft.dataset import SFTExample
from sft.loss import lr_factor, sft_loss_sum


def world() -> tuple[int, int]:
    """(rank, world size) of the default process group, or (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if world()[1] > 1:
        dist.all_reduce(tensor)
    return tensor.tolist()


class SFTTrainer:
    """Owns the model being trained (`model`: the plain HF module), its optimizer and LR schedule."""

    def __init__(self, model: torch.nn.Module, trainer_cfg, pad_token_id: int):
        self.model = model
        self.cfg = trainer_cfg
        self.pad_token_id = pad_token_id
        self.device = next(model.parameters()).device
        self.rank, self.world_size = world()
        self.module = model
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.module = DistributedDataParallel(model, device_ids=[self.device] if self.device.type == "cuda" else None)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=trainer_cfg.lr, weight_decay=trainer_cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda step: lr_factor(
                step, trainer_cfg.warmup_steps, trainer_cfg.total_steps, trainer_cfg.lr_schedule, trainer_cfg.min_lr_ratio
            ),
        )

    def local_share(self, examples: Sequence[SFTExample]) -> list[SFTExample]:
        """This rank's rows of a step's batch (every world_size-th, so lengths mix across ranks)."""
        return list(examples[self.rank :: self.world_size])

    def train_step(self, examples: Sequence[SFTExample]) -> dict[str, float]:
        """One optimizer step over this rank's `examples`; returns step-wide metrics."""
        self.module.train()
        batches = micro_batches(self.local_share(examples), self.cfg.micro_batch_tokens, self.pad_token_id)
        local_tokens = sum(b.num_loss_tokens for b in batches)
        (total_tokens,) = all_reduce_sum([local_tokens], self.device)
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for index, micro in enumerate(batches):
            micro = micro.to(self.device)
            last = index == len(batches) - 1
            # DDP all-reduces gradients once, after the last micro-batch
            with self.module.no_sync() if self.world_size > 1 and not last else nullcontext():
                logits = self.module(input_ids=micro.input_ids, attention_mask=micro.attention_mask).logits
                summed, _ = sft_loss_sum(logits, micro.labels)
                # DDP averages gradients over ranks; scale back up so the result is sum / total_tokens
                (summed * self.world_size / max(total_tokens, 1)).backward()
            loss_sum += summed.item()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip).item()
        if math.isfinite(grad_norm):
            self.optimizer.step()
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        (loss_total,) = all_reduce_sum([loss_sum], self.device)
        return {
            "train/loss": loss_total / max(total_tokens, 1),
            "train/grad_norm": grad_norm,
            "train/lr": lr,
            "train/tokens": total_tokens,
            "train/micro_batches": len(batches),
        }

    @torch.no_grad()
    def eval_loss(self, examples: Sequence[SFTExample]) -> float:
        """Mean assistant-token loss over this rank's share of `examples`, combined over ranks."""
        self.model.eval()
        loss_sum, tokens = 0.0, 0
        for micro in micro_batches(self.local_share(examples), self.cfg.micro_batch_tokens, self.pad_token_id):
            micro = micro.to(self.device)
            logits = self.model(input_ids=micro.input_ids, attention_mask=micro.attention_mask).logits
            summed, count = sft_loss_sum(logits, micro.labels)
            loss_sum, tokens = loss_sum + summed.item(), tokens + count
        total_loss, total_tokens = all_reduce_sum([loss_sum, float(tokens)], self.device)
        return total_loss / max(total_tokens, 1)
