"""Packing named tensors into bounded flat byte buffers, and unpacking them as views.

Weight sync sends a model as a few buckets instead of hundreds of tensors: one IPC handle and one
RPC per bucket. A bucket is a flat uint8 buffer plus the (name, dtype, shape, offset) of each
tensor in it; the receiver rebuilds zero-copy views. Memory stays bounded by one bucket, never a
second copy of the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import torch

ALIGN_BYTES = 256  # every tensor starts on a 256-byte boundary: aligned views for any dtype


@dataclass(frozen=True)
class TensorSlot:
    """Where one tensor lives in a bucket."""

    name: str  # HF parameter name
    dtype: str  # e.g. "bfloat16"
    shape: tuple[int, ...]
    offset: int  # bytes from the buffer's start
    nbytes: int


def _aligned(n: int) -> int:
    return (n + ALIGN_BYTES - 1) // ALIGN_BYTES * ALIGN_BYTES


def iter_buckets(
    named_tensors: Iterable[tuple[str, torch.Tensor]],
    bucket_bytes: int,
    dtype: torch.dtype,
    device: torch.device | str,
    buffer: torch.Tensor | None = None,
) -> Iterator[tuple[torch.Tensor, list[TensorSlot]]]:
    """Yield `(buffer [bytes] uint8, slots)` buckets of at most `bucket_bytes` (or one larger tensor).

    Each tensor is cast to `dtype` while it is copied into the buffer. The same buffer is reused for
    every bucket, so the consumer must be done with a bucket before the next one is requested
    (generators make that natural: the next bucket is packed only when asked for). Pass `buffer`
    ([>= bucket_bytes] uint8) to reuse one across calls.
    """
    slots: list[TensorSlot] = []
    used = 0
    for name, tensor in named_tensors:
        nbytes = tensor.numel() * dtype.itemsize
        if slots and used + nbytes > bucket_bytes:
            yield buffer, slots
            slots, used = [], 0
        if nbytes > bucket_bytes:  # a tensor larger than a bucket travels alone, in its own buffer
            yield tensor.detach().to(device=device, dtype=dtype).contiguous().view(-1).view(torch.uint8), [
                TensorSlot(name, _dtype_name(dtype), tuple(tensor.shape), 0, nbytes)
            ]
            continue
        if buffer is None:
            buffer = torch.empty(bucket_bytes, dtype=torch.uint8, device=device)
        view = buffer[used : used + nbytes].view(dtype).view(tensor.shape)
        view.copy_(tensor.detach())
        slots.append(TensorSlot(name, _dtype_name(dtype), tuple(tensor.shape), used, nbytes))
        used = _aligned(used + nbytes)
    if slots:
        yield buffer, slots


def iter_tensor_chunks(
    named_tensors: Iterable[tuple[str, torch.Tensor]], chunk_bytes: int
) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """Group tensors into lists of at most `chunk_bytes` (or one larger tensor), without copying.

    For engines in this process, which can take the trainer's tensors as they are: the chunk bound
    only matters when the tensors are fresh copies (gathered FSDP shards, dtype casts).
    """
    chunk: list[tuple[str, torch.Tensor]] = []
    used = 0
    for name, tensor in named_tensors:
        nbytes = tensor.numel() * tensor.element_size()
        if chunk and used + nbytes > chunk_bytes:
            yield chunk
            chunk, used = [], 0
        chunk.append((name, tensor))
        used += nbytes
    if chunk:
        yield chunk


def unpack_bucket(buffer: torch.Tensor, slots: list[TensorSlot]) -> list[tuple[str, torch.Tensor]]:
    """Views into `buffer` ([bytes] uint8), one per slot, in the slots' order (no copy)."""
    return [
        (s.name, buffer[s.offset : s.offset + s.nbytes].view(getattr(torch, s.dtype)).view(s.shape))
        for s in slots
    ]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
