"""load_policy's model switches: what `model.*` keys turn on is on, quietly."""

from __future__ import annotations

import torch


def test_gradient_checkpointing_is_switched_on_without_a_deprecation_warning(recwarn):
    from omegaconf import OmegaConf

    from core.trainer.setup import load_policy

    cfg = OmegaConf.create(dict(path="builtin:tiny-qwen2", dtype="float32", gradient_checkpointing=True, lora=dict(rank=0)))
    _, _, model = load_policy(cfg, torch.device("cpu"))
    assert getattr(model, "is_activation_checkpointing", None) or model.is_gradient_checkpointing
    assert not [w for w in recwarn if "checkpointing_enable" in str(w.message)]
