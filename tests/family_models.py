"""Tiny random models of each supported family (test helper, importable by name from any test folder).

Each brings what the others lack: Llama 3's rope scaling, Qwen3's q/k norms, Gemma 3's sliding-window layers
(a window of 4, shorter than the test rows, so it is exercised), its (1 + w) norms, embedding scale and query
scaling. head_dim 64: vLLM's smallest. Vocabulary 320: the byte tokenizer's 259 ids fit.
"""

from __future__ import annotations

from pathlib import Path

SMALL = dict(vocab_size=320, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
             num_key_value_heads=1, head_dim=64, max_position_embeddings=256)


def qwen2():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    return Qwen2ForCausalLM, Qwen2Config(**SMALL, tie_word_embeddings=False)


def llama3():
    from transformers import LlamaConfig, LlamaForCausalLM

    rope = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16, "rope_theta": 500000.0}
    return LlamaForCausalLM, LlamaConfig(**SMALL, rope_parameters=rope, tie_word_embeddings=True)


def qwen3():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    return Qwen3ForCausalLM, Qwen3Config(**SMALL, tie_word_embeddings=True)


def gemma3():
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(**{**SMALL, "num_hidden_layers": 3}, sliding_window=4, query_pre_attn_scalar=48,
                              layer_types=["sliding_attention", "sliding_attention", "full_attention"])
    return Gemma3ForCausalLM, config


FAMILIES = {"qwen2": qwen2, "llama3": llama3, "qwen3": qwen3, "gemma3": gemma3}


def random_model(family: str, attention: str = "eager", seed: int = 0):
    import torch

    model_class, config = FAMILIES[family]()
    torch.manual_seed(seed)
    return model_class._from_config(config, attn_implementation=attention)


def write_model_dir(family: str, out: Path) -> Path:
    """A loadable HF directory (weights, config, byte tokenizer) of a random `family` model."""
    from core.models.cache import save_hf_weights
    from core.models.tokenizer import build_byte_tokenizer

    tokenizer = build_byte_tokenizer()
    model = random_model(family)
    out.mkdir(parents=True, exist_ok=True)
    model.config.bos_token_id, model.config.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    save_hf_weights(model, out)
    tokenizer.save_pretrained(out)
    return out
