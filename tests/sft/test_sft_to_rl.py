"""SFT hands over to RL: `python -m core.main model.path=<sft run>/final` trains the SFT result, not a fresh model
(README, "SFT then GRPO": the spell_backward presets do this with SmolLM2 on a GPU)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from core.models.builtin import resolve_model_path
from core.rl.loop import train as train_rl
from sft.loop import train as train_sft
from sft_fakes import tiny_run


@pytest.mark.slow
def test_rl_starts_from_the_sft_output(tmp_path, compose_config):
    sft = tiny_run(tmp_path / "sft", "trainer.save_model=true")
    train_sft(sft)
    sft_final = tmp_path / "sft" / "final"
    rl = compose_config("+backend=cpu", f"model.path={sft_final}", f"trainer.output_dir={tmp_path / 'rl'}",
                        "trainer.total_steps=2", "trainer.lr=1e-9", "trainer.loggers=[jsonl]", "trainer.test_freq=0")
    train_rl(rl)

    def weights(path) -> dict[str, torch.Tensor]:
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).state_dict()

    start, after_rl = weights(sft_final), weights(tmp_path / "rl" / "final")
    untrained = weights(resolve_model_path(sft.model.path))
    assert all(torch.allclose(after_rl[k], start[k], atol=1e-5) for k in start)  # lr 1e-9: RL kept the SFT weights
    assert any(not torch.allclose(untrained[k], start[k], atol=1e-3) for k in start)  # which SFT had changed
