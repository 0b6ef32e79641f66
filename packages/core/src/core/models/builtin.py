"""Built-in random-init models, so demos and tests need no download.

`builtin:NAME` resolves to a real Hugging Face model directory (config.json, model.safetensors and a
tokenizer), created once under the cache and reused. Because it is a plain HF directory, the HF
engine, vLLM and `from_pretrained` all load the same files.
"""

from __future__ import annotations

from pathlib import Path

import torch

from core.distributed.devices import default_accelerator
from core.errors import TandemError
from core.models.cache import cache_root, save_hf_weights, write_dir_atomically
from core.models.tokenizer import build_byte_tokenizer

BUILTIN_PREFIX = "builtin:"

# Qwen2 shapes. head_dim >= 64 and untied embeddings keep every shape loadable by vLLM in place.
BUILTIN_SHAPES: dict[str, dict] = {
    "tiny-qwen2": dict(  # ~0.12M parameters: the CPU demo and tests
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=1,
        num_key_value_heads=1, head_dim=64, vocab_size=320, max_position_embeddings=512,
    ),
    "small-qwen2": dict(  # ~0.8M parameters: the SFT demo (the tiny one cannot learn to reverse letters)
        hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=2,
        num_key_value_heads=2, head_dim=64, vocab_size=320, max_position_embeddings=512,
    ),
    "qwen2.5-0.5b-shape": dict(
        hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
        num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768,
    ),
    "qwen2.5-1.5b-shape": dict(
        hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
        num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768,
    ),
    "qwen2.5-3b-shape": dict(
        hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
        num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768,
    ),
    "qwen2.5-7b-shape": dict(
        hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
        num_key_value_heads=4, vocab_size=152064, max_position_embeddings=32768,
    ),
}


HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "tokenizer*"]


def resolve_model_path(path: str) -> str:
    """Return a local HF model directory for `model.path`: an HF directory as it is, a builtin model
    built on first use, a GGUF (a file, or `packaged:NAME`) imported once into the cache, or a Hugging Face
    Hub name ("Qwen/Qwen2.5-0.5B-Instruct") from the local HF cache (downloaded unless HF_HUB_OFFLINE=1)."""
    from core.hub import HUB_NAME, hub_snapshot
    from core.models.gguf import PACKAGED_PREFIX, cached_import, packaged_gguf

    if path.startswith(BUILTIN_PREFIX):
        return str(materialize_builtin(path[len(BUILTIN_PREFIX):]))
    if path.startswith(PACKAGED_PREFIX):
        return str(cached_import(packaged_gguf(path[len(PACKAGED_PREFIX):]), cache_root()))
    model_dir = Path(path).expanduser()
    if model_dir.suffix == ".gguf" and model_dir.is_file():
        return str(cached_import(model_dir, cache_root()))
    if not model_dir.is_dir() and HUB_NAME.fullmatch(path):
        model_dir = hub_snapshot(path, f"model.path '{path}'", patterns=HUB_FILES)
    if not model_dir.is_dir():
        raise TandemError(f"model.path '{path}' does not exist (builtin models: {_builtin_names()})")
    if not (model_dir / "config.json").is_file():
        raise TandemError(f"model.path '{path}' is not a Hugging Face model directory (no config.json)")
    _check_config_json(model_dir / "config.json")
    return str(model_dir)


def _check_config_json(config_file: Path) -> None:
    """A corrupt config.json is named here, not deep inside transformers; custom code is never run."""
    import json
    import logging

    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TandemError(f"{config_file} is not valid JSON: {exc}") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise TandemError(f"{config_file} names no model_type; is this a Hugging Face model directory?")
    if "auto_map" in config:
        logging.getLogger("tandem").warning(
            "%s declares custom model code (auto_map); Tandem does not run it (trust_remote_code stays off) "
            "and loads transformers' built-in class for model_type '%s'", config_file.parent, config["model_type"])


def materialize_builtin(name: str, seed: int = 0) -> Path:
    """Create `builtin:name` under the cache once; a crash mid-write leaves no partial directory."""
    if name not in BUILTIN_SHAPES:
        raise TandemError(f"unknown builtin model '{name}'; builtin models: {_builtin_names()}")
    target = cache_root() / name
    if (target / "config.json").is_file():
        return target
    return write_dir_atomically(target, lambda staging: _write_model_dir(name, staging, seed))


def builtin_config(name: str):
    """The transformers config of `builtin:name`, without writing the model (core.trainer.memory_plan sizes it)."""
    from transformers import Qwen2Config

    if name not in BUILTIN_SHAPES:
        raise TandemError(f"unknown builtin model '{name}'; builtin models: {_builtin_names()}")
    tokenizer = build_byte_tokenizer()
    shape = BUILTIN_SHAPES[name]
    assert shape["vocab_size"] >= len(tokenizer), "model vocab must cover the tokenizer"
    return Qwen2Config(**shape, tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def _write_model_dir(name: str, out: Path, seed: int) -> None:
    from transformers import AutoModelForCausalLM

    tokenizer = build_byte_tokenizer()
    config = builtin_config(name)
    # large shapes are written in bf16 (halves the bytes); the tiny one trains in fp32 on CPU
    dtype = torch.float32 if name.startswith("tiny") else torch.bfloat16
    # initialising a 1.5B model takes a minute on a CPU and a second on a GPU
    device = default_accelerator()
    with torch.random.fork_rng(devices=[] if device == "cpu" else [0], device_type=device), torch.device(device):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    save_hf_weights(model, out)
    model.generation_config.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _builtin_names() -> str:
    return ", ".join(BUILTIN_PREFIX + n for n in BUILTIN_SHAPES)
