"""Building the loop's parts from config: device, policy model and tokenizer, prompt source."""

from __future__ import annotations

import torch

from core.errors import TandemError
from core.models.builtin import resolve_model_path

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TandemError(f"trainer.device={name} but no GPU is visible")
    return torch.device(name)


def load_policy(model_cfg, device: torch.device):
    """(model_dir, tokenizer, model) for `model.path`; the model is on `device`, in `model.dtype`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if model_cfg.dtype not in DTYPES:
        raise TandemError(f"model.dtype={model_cfg.dtype!r} is not one of {', '.join(DTYPES)}")
    model_dir = resolve_model_path(model_cfg.path)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=DTYPES[model_cfg.dtype]).to(device)
    if model_cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model_dir, tokenizer, model


def make_prompt_source(data_cfg, tokenizer):
    if data_cfg.task == "repeat_letters":
        from core.data.synthetic import RepeatLettersTask

        return RepeatLettersTask(tokenizer, seed=data_cfg.seed)
    raise TandemError(f"data.task={data_cfg.task!r} is unknown; built-in tasks: repeat_letters")
