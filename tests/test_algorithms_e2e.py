"""Every `algorithm=` option runs the real loop end to end on the CPU demo, and real data works too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.rl.loop import train

FIXTURES = Path(__file__).parent / "fixtures"
ALGORITHMS = sorted(p.stem for p in (Path(__file__).parents[1] / "conf" / "algorithm").glob("*.yaml"))  # all options


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_algorithm_runs_a_few_demo_steps(algorithm, compose_config, tmp_path):
    extra = ["algorithm.overlong_buffer=1"] if algorithm == "dapo" else []  # exercise the penalty too
    cfg = compose_config(
        f"algorithm={algorithm}", "+backend=cpu", f"trainer.output_dir={tmp_path}", "trainer.total_steps=3",
        "trainer.test_freq=3", "trainer.loggers=[jsonl]", "trainer.save_model=false", "trainer.report=false", *extra,
    )
    summary = train(cfg)
    assert summary["steps"] == 3 and "val_reward_end" in summary
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert "actor/pg_loss" in last and "val/reward" in last
    if algorithm == "ppo":
        assert "critic/vf_loss" in last
    if algorithm == "dapo":
        assert last["dapo/sampling_tries"] >= 1 and "dapo/overlong_penalty" in last


def test_gsm8k_format_dataset_with_gsm8k_reward(compose_config, tmp_path):
    cfg = compose_config(
        "data=gsm8k", "+backend=cpu", f"trainer.output_dir={tmp_path}",
        f"data.train_files=[{FIXTURES / 'gsm8k' / 'train.parquet'}]",
        f"data.val_files=[{FIXTURES / 'gsm8k' / 'test.parquet'}]",
        "data.max_prompt_length=192", "data.prompt_batch_size=4", "rollout.n=2", "rollout.max_tokens=8",
        "trainer.total_steps=2", "trainer.test_freq=2", "trainer.save_model=false",
    )
    summary = train(cfg)
    assert summary["steps"] == 2
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert "val/openai/gsm8k/reward" in lines[-1]
    assert (tmp_path / "report.png").is_file()


@pytest.mark.parametrize("overrides", [
    ("algorithm.rollout_correction=token_tis",),
    ("algorithm.rollout_correction=seq_mask",),  # rejection takes tokens out of the mask before the counts
    ("algorithm=dapo", "rollout.logprobs=true"),  # dynamic sampling keeps the engine's log-probs of the kept rows
])
def test_the_engines_logprobs_measure_and_correct_the_mismatch(overrides, compose_config, tmp_path):
    cfg = compose_config(
        *overrides, "+backend=cpu", f"trainer.output_dir={tmp_path}", "trainer.total_steps=2",
        "trainer.loggers=[jsonl]", "trainer.save_model=false", "trainer.report=false",
    )
    train(cfg)
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    # the HF engine and the trainer hold the same fp32 weights: the two scorings agree closely
    assert 1.0 <= last["mismatch/token_mult_prob_error"] < 1.001
    assert last["mismatch/abs_logprob_diff_max"] < 1e-3
    if "algorithm.rollout_correction=token_tis" in overrides:
        assert last["actor/correction_weight_mean"] == pytest.approx(1.0, abs=1e-3)
    if "algorithm.rollout_correction=seq_mask" in overrides:  # the same weights: nothing to reject
        assert last["actor/correction_zeroed"] == pytest.approx(0.0) and last["actor/correction_weight_mean"] == 1.0
