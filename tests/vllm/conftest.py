"""Shared fixtures for the vLLM tests: a tiny real model directory and a started engine."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A random-init Qwen2 vLLM accepts on CPU: head_dim 64, untied embeddings, byte tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    from core.models.tokenizer import build_byte_tokenizer

    out = tmp_path_factory.mktemp("tiny-qwen2")
    tokenizer = build_byte_tokenizer()
    config = Qwen2Config(
        hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=64, vocab_size=320, max_position_embeddings=512,
        tie_word_embeddings=False, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)
