"""LoRA through peft: adapters on the policy, the frozen base as the reference, merged weights for the engine.

`model.lora.rank > 0` wraps the policy with peft's LoRA on `model.lora.target_modules` (nn.Linear
layers). The reference policy is the same model with its adapters disabled, so there is no second
copy of the weights. The rollout engine receives merged weights W + scale * B @ A under the base
model's parameter names, which every engine loads as it loads a full model (CUDA graphs untouched).
The merge is computed here from the (possibly FSDP-sharded) tensors, one layer at a time, never by
peft's in-place merge, so the trainer's parameters are never modified.
"""

from __future__ import annotations

import warnings
from contextlib import nullcontext
from typing import Iterator

import torch

from core.errors import TandemError

ADAPTER = "default"  # peft's name for the one adapter Tandem trains
PEFT_PREFIX = "base_model.model."


def apply_lora(model: torch.nn.Module, lora_cfg) -> torch.nn.Module:
    """The policy with trainable LoRA adapters (base weights frozen)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise TandemError("model.lora.rank > 0 needs peft: pip install 'tandem-core[lora]'") from None

    # peft asks transformers a deprecated question on every save; the answer is right, the warning noise
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    config = LoraConfig(r=lora_cfg.rank, lora_alpha=lora_cfg.alpha, lora_dropout=lora_cfg.dropout,
                        target_modules=list(lora_cfg.target_modules), bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def is_lora(model: torch.nn.Module) -> bool:
    return hasattr(model, "peft_config")


def adapters_disabled(model: torch.nn.Module):
    """Context in which `model` is its base model (the reference policy of a LoRA run)."""
    return model.disable_adapter() if is_lora(model) else nullcontext()


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor of an FSDP2 DTensor shard (a collective), or the tensor itself."""
    tensor = tensor.detach()
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def base_name(peft_name: str) -> str:
    """peft's parameter name -> the base model's (what engines and HF checkpoints use)."""
    return peft_name.removeprefix(PEFT_PREFIX).replace(".base_layer.", ".")


def merged_parameters(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(base name, merged full tensor) for every base parameter; adapters folded into their layers."""
    from peft.tuners.lora import LoraLayer

    layers = {name: module for name, module in model.named_modules() if isinstance(module, LoraLayer)}
    for name, param in model.named_parameters():
        if ".lora_" in name:
            continue  # folded into its base layer's weight below
        tensor = full_tensor(param)
        layer = layers.get(name.removesuffix(".base_layer.weight")) if name.endswith(".base_layer.weight") else None
        if layer is not None and ADAPTER in layer.lora_A:
            a, b = full_tensor(layer.lora_A[ADAPTER].weight), full_tensor(layer.lora_B[ADAPTER].weight)
            tensor = tensor + (b.float() @ a.float() * layer.scaling[ADAPTER]).to(tensor.dtype)
        yield base_name(name), tensor
