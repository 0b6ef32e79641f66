"""Where the trainer keeps its weights and where it computes.

On several ranks FSDP2's mixed precision keeps fp32 parameters (Adam's master weights) and computes in
`model.dtype`. On one device the parameters are stored in `model.dtype` itself unless
`trainer.master_weights=true`. With bf16 that loses updates: a weight moves only by a step at least half
of bf16's spacing there (|w| / 256; 8e-5 for |w| = 0.02), and AdamW's steps are about the learning rate,
so at RL learning rates (1e-6 to 3e-5) nearly every weight stays where it was. `trainer.master_weights`
gives one device FSDP's split: fp32 parameters, gradients and Adam moments, the forward and backward under
`torch.autocast` in `model.dtype` (the matrix products and attention in bf16, as before).
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass
from typing import ContextManager

import torch

from core.trainer.optimizers import STOCHASTIC_ROUNDING

HALF_PRECISION = (torch.bfloat16, torch.float16)
log = logging.getLogger("tandem")


@dataclass(frozen=True)
class TrainingPrecision:
    param_dtype: torch.dtype  # parameters, their gradients and Adam's moments
    autocast_dtype: torch.dtype | None = None  # forward/backward under torch.autocast in it; None: no autocast

    def compute(self, device: torch.device) -> ContextManager:
        """The context every trainer forward runs in."""
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device.type, dtype=self.autocast_dtype)


def training_precision(compute_dtype: torch.dtype, sharded: bool, master_weights: bool,
                       lora: bool = False) -> TrainingPrecision:
    """FSDP (several ranks): fp32 parameters, its own casts. One device: fp32 + autocast with master
    weights and a half-precision `model.dtype`, else parameters in `model.dtype`.

    LoRA: peft keeps the adapters in fp32 whatever the base's dtype, so they are master weights already and
    the frozen base stays in `model.dtype`; master weights then only add autocast, which runs the adapters'
    products in `model.dtype` too (eager peft computes them, and the sum with the base layer's output, in fp32).
    """
    if sharded:
        return TrainingPrecision(torch.float32)
    if master_weights and compute_dtype in HALF_PRECISION:
        return TrainingPrecision(compute_dtype if lora else torch.float32, compute_dtype)
    return TrainingPrecision(compute_dtype)


def configured_precision(model_cfg, trainer_cfg, compute_dtype: torch.dtype, sharded: bool) -> TrainingPrecision:
    """The policy's precision for this run (`trainer.master_weights`, LoRA or not), warning once when its
    optimizer would round updates away."""
    lora = model_cfg.lora.rank > 0
    precision = training_precision(compute_dtype, sharded, trainer_cfg.master_weights, lora)
    rounds_stochastically = trainer_cfg.get("optimizer") == STOCHASTIC_ROUNDING  # small steps survive in expectation
    if not rounds_stochastically and (warning := rounding_warning(precision, trainer_cfg.lr, lora)):
        log.warning(warning)
    return precision


def rounding_warning(precision: TrainingPrecision, lr: float, lora: bool = False) -> str | None:
    """What to tell a run whose optimizer updates half-precision weights in place at a learning rate that
    rounds away (a step of ~lr is lost on any weight above 2 lr / eps, eps the dtype's spacing at 1.0);
    None when nothing is lost (fp32 weights, LoRA's fp32 adapters, or a learning rate that moves even
    weights of magnitude 1)."""
    if lora or precision.param_dtype not in HALF_PRECISION:
        return None
    limit = 2 * lr / torch.finfo(precision.param_dtype).eps
    if limit >= 1.0:
        return None
    name = str(precision.param_dtype).removeprefix("torch.")
    return (f"model.dtype={name} on one device: the optimizer updates {name} weights in place, and at "
            f"trainer.lr={lr:g} a step is rounded away on every weight larger than ~{limit:.2g} in magnitude "
            f"(most of a model's). trainer.master_weights=true keeps fp32 weights and computes in {name} "
            "(as FSDP does on several GPUs); trainer.optimizer=adamw_bf16_sr keeps bf16 weights and rounds each "
            "update stochastically; model.dtype=float32 computes in fp32.")
