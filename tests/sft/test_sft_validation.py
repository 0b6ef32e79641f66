"""Validation inside real (tiny) SFT runs: the engine sees the current weights, once per validation,
all prompts in one call, in order; scores reach the tracker; the engine is closed however the run ends."""

from __future__ import annotations

import json
import math

import pytest
import torch

from core.errors import TandemError
from sft.dataset import load_data
from sft.loop import train
from sft_fakes import tiny_run


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_engine_built_once_gets_current_weights_before_every_validation(tmp_path, fake_backend, tiny_tokenizer):
    cfg = tiny_run(tmp_path, "validation.top_p=0.5")
    train(cfg)
    (engine,) = fake_backend.engines  # one engine for the whole run
    assert engine.events.count("close") == 1 and engine.events[-1] == "close"
    # validations at steps 0, 2, 4: push weights, then one batched call with every prompt, in order
    assert len(engine.generate_calls) == len(engine.pushed) == 3
    _, val_set = load_data(cfg, tiny_tokenizer)
    for prompts, params in engine.generate_calls:
        assert prompts == [e.prompt_ids for e in val_set]  # token ids straight from the dataset
        assert (params.top_p, params.temperature, params.max_tokens) == (0.5, 0.0, 8)
    # the pushed weights change as training goes on
    names = list(engine.pushed[0])
    assert not torch.equal(engine.pushed[0][names[0]], engine.pushed[1][names[0]])
    assert not torch.equal(engine.pushed[1][names[0]], engine.pushed[2][names[0]])
    assert engine.events.index("update_weights") < engine.events.index("generate")


def test_scores_loss_and_samples_reach_the_tracker_and_the_validation_files(tmp_path, fake_backend):
    train(tiny_run(tmp_path))
    metrics = [m for m in read_jsonl(tmp_path / "metrics.jsonl") if "val/loss" in m]
    assert [m["step"] for m in metrics] == [0, 2, 4]
    assert all(0.0 <= m["val/reward"] <= 1.0 and m["val/fallback_engine"] == 0.0 for m in metrics)
    records = read_jsonl(tmp_path / "validation" / "step_000004.jsonl")
    assert len(records) == 8 and {"prompt", "generation", "reference", "score"} <= set(records[0])
    assert records[0]["prompt"].startswith("<|im_start|>user\nreverse: ")


def test_engine_is_closed_when_the_run_fails(tmp_path, fake_backend):
    with pytest.raises(TandemError, match="reward exploded"):
        train(tiny_run(tmp_path, "data.reward_fn=sft_fakes:exploding_reward"))
    (engine,) = fake_backend.engines
    assert engine.events[-1] == "close"


def test_without_reward_function_validation_reports_loss_only(tmp_path, fake_backend):
    summary = train(tiny_run(tmp_path, "data.reward_fn=null"))
    assert "val/reward_start" not in summary and summary["val/loss_end"] < summary["val/loss_start"]


def test_hf_engine_generations_change_as_the_model_trains(tmp_path):
    summary = train(tiny_run(tmp_path, "trainer.total_steps=30", "validation.val_freq=30", "trainer.lr=5e-3",
                             "trainer.save_model=true"))
    before = [r["generation"] for r in read_jsonl(tmp_path / "validation" / "step_000000.jsonl")]
    after = [r["generation"] for r in read_jsonl(tmp_path / "validation" / "step_000030.jsonl")]
    assert before != after  # greedy decoding: only new weights can change them
    assert summary["val/loss_end"] < summary["val/loss_start"]
    assert (tmp_path / "final" / "model.safetensors").is_file()


def test_unavailable_backend_engine_falls_back_to_hf_and_the_run_goes_on(tmp_path, monkeypatch):
    from core.plugins.manager import get_plugin_manager

    from core.backends.cpu import CpuBackend
    from core.plugins.hookspecs import hookimpl

    class NoVllmBackend(CpuBackend):
        def make_rollout_engine(self, cfg, model_dir):
            raise ImportError("No module named 'vllm'")

    class NoVllm:
        @hookimpl(tryfirst=True)
        def tandem_backend(self, name):
            return NoVllmBackend() if name == "cpu" else None

    pm = get_plugin_manager()
    pm.register(NoVllm(), name="test-no-vllm")
    try:
        train(tiny_run(tmp_path))
    finally:
        pm.unregister(name="test-no-vllm")
    metrics = [m for m in read_jsonl(tmp_path / "metrics.jsonl") if "val/loss" in m]
    assert all(m["val/fallback_engine"] == 1.0 for m in metrics) and len(metrics) == 3


def test_master_weights_train_fp32_weights_and_push_them_to_the_engine(tmp_path, fake_backend):
    """model.dtype=bfloat16 with trainer.master_weights=true on one device: fp32 weights (the pushed ones
    too: the engine casts to its own dtype), and the small steps of lr 1e-5 are not lost between validations."""
    summary = train(tiny_run(tmp_path, "model.dtype=bfloat16", "trainer.master_weights=true", "trainer.lr=1e-5"))
    assert math.isfinite(summary["val/loss_end"])
    (engine,) = fake_backend.engines
    first, last = engine.pushed[0], engine.pushed[-1]
    weight = next(name for name in first if name.endswith("mlp.up_proj.weight"))
    assert first[weight].dtype == torch.float32
    assert (first[weight] != last[weight]).float().mean() > 0.5  # most entries moved
