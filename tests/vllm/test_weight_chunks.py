"""Grouping tensors for in-process weight sync: bounded chunks, no copies, order kept."""

from __future__ import annotations

import torch

from core.rollout.weight_buckets import iter_tensor_chunks


def test_chunks_are_bounded_keep_order_and_do_not_copy():
    tensors = [(f"w{i}", torch.zeros(n)) for i, n in enumerate([4, 4, 10, 1, 1, 2])]  # float32: 4 bytes each
    chunks = list(iter_tensor_chunks(tensors, chunk_bytes=32))
    # 16+16 fits 32; 40 alone exceeds the bound and travels alone; then 4+4+8 fits
    assert [[name for name, _ in chunk] for chunk in chunks] == [["w0", "w1"], ["w2"], ["w3", "w4", "w5"]]
    flat = [t for chunk in chunks for _, t in chunk]
    assert all(a is b for a, (_, b) in zip(flat, tensors))
