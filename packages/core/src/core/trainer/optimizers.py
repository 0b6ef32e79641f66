"""The optimizer every trainer builds (`trainer.optimizer`): the actor's, the critic's, SFT's.

- `adamw`: torch's AdamW; its moments in the weights' dtype, made up front (`allocate_adam_state`).
- `adamw_bf16_sr`: torchao's AdamW for bf16 weights with stochastic rounding: each update is rounded up or down
  to a neighbouring bf16 value with the probabilities that keep its mean exact, so the small steps of RL
  learning rates survive in expectation instead of rounding away (core/trainer/precision.py), without
  `trainer.master_weights`' fp32 copy: 4 bytes a parameter for weights, moments and all, not 16.
"""

from __future__ import annotations

from typing import Iterable

import torch

from core.config.schema import OPTIMIZERS
from core.errors import TandemError

STOCHASTIC_ROUNDING = "adamw_bf16_sr"


def make_optimizer(params: Iterable[torch.nn.Parameter], name: str, lr: float,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    params = list(params)
    if name == "adamw":
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        allocate_adam_state(optimizer)
        return optimizer
    if name != STOCHASTIC_ROUNDING:  # the config's value is checked before the run (core.config.ranges)
        raise ValueError(f"unknown optimizer {name!r}; the optimizers are {', '.join(OPTIMIZERS)}")
    dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in params})
    if dtypes != ["bfloat16"]:
        raise TandemError(f"trainer.optimizer={name} rounds bf16 weights, and these are {', '.join(dtypes)}: set "
                          "model.dtype=bfloat16 and trainer.master_weights=false (it replaces their fp32 copy); "
                          "under FSDP (several GPUs) the weights are fp32 masters: use adamw there")
    try:
        from torchao.optim import _AdamW
    except ImportError:
        raise TandemError(f"trainer.optimizer={name} needs torchao: pip install 'tandem-core[lowmem]'") from None
    return _AdamW(params, lr=lr, weight_decay=weight_decay, bf16_stochastic_round=True)


def allocate_adam_state(optimizer: torch.optim.Optimizer) -> None:
    """Create Adam's moments now, before the first forward pass, instead of at the first `step()`.

    Made lazily, they are carved out of the large cached blocks the first backward pass leaves
    behind (logits, activations) and pin those segments for the rest of the run, so memory the
    trainer holds while the rollout engine sleeps grows with every step's new layout.
    """
    from torch.optim.optimizer import _get_scalar_dtype

    for group in optimizer.param_groups:
        for param in group["params"]:
            if param.requires_grad and not optimizer.state[param]:
                optimizer.state[param] = {
                    "step": torch.tensor(0.0, dtype=_get_scalar_dtype()),
                    "exp_avg": torch.zeros_like(param, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(param, memory_format=torch.preserve_format),
                }
