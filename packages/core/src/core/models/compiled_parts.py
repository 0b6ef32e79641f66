"""torch.compile for the parts of a decoder layer that eager PyTorch runs as chains of small kernels.

Profiled on the H200 (benchmarks/grpo_step.py --profile, 0.5B shape): matrix products were 29% of the
update's GPU time and elementwise kernels most of the rest: an RMSNorm is ~8 kernels (casts to fp32 and
back, pow, mean, rsqrt, two products) and the MLP's SiLU(gate) * up two more over [tokens x 4864], each
reading and writing memory, in forward and again in backward. Compiled, each such part is a few fused
kernels; the matrix products stay cuBLAS's. Attention is left alone (its flash kernel is fused already, and
the varlen path reads the rows' bounds on the host). `dynamic=True`: micro-batches differ in token count,
so shapes are symbolic from the first call instead of one recompile per new length.
"""

from __future__ import annotations

import logging

import torch

from core.distributed.fsdp import decoder_layers
from core.errors import TandemError

log = logging.getLogger("tandem")


def resolve_compile(setting: bool | None, by_default: bool) -> bool:
    """`trainer.compile`, with null meaning the backend's `compiles_by_default` (GPUs: yes; on a CPU compiling
    costs more than it saves for the small models run there, and needs a C++ compiler)."""
    return by_default if setting is None else bool(setting)


def compile_failure(device: torch.device) -> str | None:
    """None when torch.compile builds and runs a kernel on `device`, else what went wrong, in one line.
    Checked before a run relies on it: a missing Triton or C compiler would otherwise fail inside the first
    forward, as a traceback from deep in inductor."""
    try:
        torch.compile(lambda x: x * 2 + 1, dynamic=True)(torch.ones(4, device=device))
    except Exception as exc:  # noqa: BLE001 - whatever inductor raises, the run is told and goes on or stops
        lines = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return None


def use_compile(setting: bool | None, device: torch.device, by_default: bool) -> bool:
    """`trainer.compile` resolved and checked: null falls back to eager (with a warning) where compiling
    fails; an explicit true that cannot be honoured stops the run naming the cause."""
    if not resolve_compile(setting, by_default):
        return False
    failure = compile_failure(device)
    if failure is None:
        return True
    if setting:
        raise TandemError(f"trainer.compile=true, but torch.compile fails on {device}: {failure}")
    log.warning("trainer.compile: torch.compile fails on %s (%s); running eager (trainer.compile=false hides this)",
                device, failure)
    return False


def switch_compile(setting: bool | None, device: torch.device, model: torch.nn.Module, by_default: bool) -> bool:
    """Whether this run compiles `model`'s layer parts (`use_compile`; never a LoRA model), with the log-prob
    chunk kernels switched to match."""
    from core.algorithms.logprobs import use_compiled_kernels
    from core.models.lora import is_lora

    compiled = not is_lora(model) and use_compile(setting, device, by_default)
    use_compiled_kernels(compiled)
    return compiled


def compile_layer_parts(model: torch.nn.Module, backend: str = "inductor") -> torch.nn.Module:
    """Compile, in place, every child of every decoder layer but its attention (norms, MLP); returns `model`.
    Call before FSDP wraps the layers (torchtitan's order). Compiling happens at the first forward."""
    for layer in decoder_layers(model):
        for name, child in layer.named_children():
            if "attn" not in name and not isinstance(child, torch.nn.Identity):
                child.compile(dynamic=True, backend=backend)
    return model
