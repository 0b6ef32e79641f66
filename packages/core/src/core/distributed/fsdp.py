"""The FSDP2 training engine: shard a Hugging Face causal LM over the data-parallel ranks.

`fully_shard` goes on every decoder layer, then on the root (embeddings, final norm, LM head), so
one layer's full parameters exist at a time. Mixed precision keeps fp32 master weights and fp32
gradient reduction while computing in bf16; CPU offload keeps parameters, gradients and optimizer
state in host memory between uses. Parameters become DTensors: code that needs a full tensor calls
`full_tensor()` (see core.sharding.base.iter_full_parameters), and `clip_grad_norm` below returns a
plain float of the global norm.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

from core.errors import TandemError


@dataclass(frozen=True)
class FSDPSettings:
    """How the trainer's models are sharded (from `model.dtype` and `trainer.cpu_offload`)."""

    compute_dtype: torch.dtype  # bf16 on GPU: parameters are cast for forward/backward only
    cpu_offload: bool = False  # params, grads and optimizer state live on the CPU between uses
    reshard_after_forward: bool = True  # ZeRO-3; False keeps gathered params until backward (ZeRO-2)


def device_mesh(device: torch.device) -> DeviceMesh:
    """A 1-D mesh over all ranks of the default process group (pure data parallelism)."""
    return init_device_mesh(device.type, (dist.get_world_size(),))


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated blocks of an HF model: modules whose class is in `_no_split_modules`."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    layers = [module for module in model.modules() if type(module).__name__ in names]
    if not layers:
        raise TandemError(
            f"cannot find the decoder layers of {type(model).__name__} to shard "
            "(it declares no `_no_split_modules`); use a transformers causal LM"
        )
    return layers


def shard_model(model: torch.nn.Module, mesh: DeviceMesh, settings: FSDPSettings) -> torch.nn.Module:
    """Apply fully_shard per decoder layer and on the root, in place; returns the model.

    The model must hold fp32 (master) parameters; `settings.compute_dtype` is what the forward sees.
    """
    mixed = MixedPrecisionPolicy(param_dtype=settings.compute_dtype, reduce_dtype=torch.float32)
    options = dict(mesh=mesh, mp_policy=mixed, reshard_after_forward=settings.reshard_after_forward)
    if settings.cpu_offload:
        options["offload_policy"] = CPUOffloadPolicy()
    for layer in decoder_layers(model):
        fully_shard(layer, **options)
    fully_shard(model, **options)
    return model


def clip_grad_norm(parameters, max_norm: float) -> float:
    """Clip gradients to `max_norm` on the norm over ALL shards; returns that norm (before clipping).

    With DTensor gradients torch computes each shard's norm and all-reduces them, returning a
    replicated DTensor; `full_tensor()` makes it a plain tensor, identical on every rank.
    """
    norm = torch.nn.utils.clip_grad_norm_(list(parameters), max_norm)
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return float(norm)

