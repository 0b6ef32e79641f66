"""The sharding-manager interface: how trainer weights reach the rollout engine.

A sharding manager is a context manager around every rollout (and every SFT validation):

    with sharding_manager:          # enter: engine wakes and receives the trainer's current weights
        out = engine.generate(...)  # exit: engine sleeps and gives its memory back to the trainer

This keeps "which weights does the engine hold" out of the training loop entirely.
"""

from __future__ import annotations

from typing import Iterator, Protocol, runtime_checkable

import torch

from core.models.lora import is_lora, merged_parameters


@runtime_checkable
class ShardingManager(Protocol):
    def __enter__(self) -> "ShardingManager": ...

    def __exit__(self, exc_type, exc, tb) -> None: ...


def iter_full_parameters(
    model: torch.nn.Module, dtype: torch.dtype | None = None
) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield `(hf_name, full_tensor)` one parameter at a time.

    FSDP2 parameters are DTensors; each is gathered on its own (`full_tensor()`), so peak extra
    memory is one parameter, never a second copy of the model. Buffers that belong in a checkpoint
    (none for decoder LMs, but kept for generality) are not synced: engines build their own.
    """
    named = merged_parameters(model) if is_lora(model) else (
        (name, param.detach()) for name, param in model.named_parameters()
    )
    for name, tensor in named:  # a LoRA policy: merged weights under the base model's names
        if hasattr(tensor, "full_tensor"):  # DTensor from fully_shard
            tensor = tensor.full_tensor()
        if dtype is not None and tensor.dtype != dtype:
            tensor = tensor.to(dtype)
        yield name, tensor
