"""A run whose numbers died never exits 0: non-finite values stop it (or are skipped, up to K in a
row), a reward function that fails on every sample stops it, each with one line and exit code 3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from core.run.health import NonFiniteGuard, first_nonfinite

HERE = Path(__file__).parent


def run_demo(tmp_path, *overrides, timeout=180):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, "-m", "core.main", "+backend=cpu", "trainer.total_steps=6", "trainer.test_freq=0",
           "trainer.save_model=false", "trainer.report=false", f"trainer.output_dir={tmp_path}", *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def logged_steps(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_diverged_policy_stops_naming_step_phase_and_quantity(tmp_path):
    # lr 1e30: step 1's update sends the weights to ~1e30, step 2's rollout samples from NaN probabilities
    done = run_demo(tmp_path, "trainer.lr=1e30")
    assert done.returncode == 3, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert "tandem: error: step 2: non-finite probabilities in the rollout phase" in done.stderr
    assert [row["step"] for row in logged_steps(tmp_path)] == [1]


def test_a_non_finite_loss_stops_the_run_after_logging_its_step(tmp_path):
    # a KL coefficient of 1e38 makes the step-2 loss overflow float32 (step 1's KL is exactly 0)
    done = run_demo(tmp_path, "algorithm.kl_coef=1e38")
    assert done.returncode == 3, done.stderr[-2000:]
    assert "in the update phase" in done.stderr and "Traceback" not in done.stderr
    died = logged_steps(tmp_path)[-1]
    assert died["step"] == int(done.stderr.split("step ")[1].split(":")[0])  # the step that died is logged


def test_skip_counts_bad_steps_and_stops_after_k_in_a_row(tmp_path):
    done = run_demo(tmp_path, "algorithm.kl_coef=1e38", "trainer.on_nonfinite=skip", "trainer.max_nonfinite_steps=2")
    assert done.returncode == 3, done.stderr[-2000:]
    assert "2 steps in a row" in done.stderr
    skipped = [row["health/skipped_steps"] for row in logged_steps(tmp_path)]
    assert skipped[-2:] == [1.0, 2.0] and skipped[0] == 0.0


def test_a_reward_that_fails_on_every_sample_stops_the_run(tmp_path):
    done = run_demo(tmp_path, "reward.reward_fn=broken_rewards:always_inf")
    assert done.returncode == 3, done.stderr[-2000:]
    assert "reward function 'always_inf' failed on 128 of 128 samples" in done.stderr
    assert "returned inf, not a finite number" in done.stderr and "Traceback" not in done.stderr


def test_a_reward_that_calls_sys_exit_is_a_failing_reward_not_a_silent_exit(tmp_path):
    done = run_demo(tmp_path, "reward.reward_fn=broken_rewards:exits")
    assert done.returncode == 3, done.stderr[-2000:]  # every sample failed: the run stops, and says why
    assert "reward function 'exits' failed on 128 of 128 samples" in done.stderr
    assert "called sys.exit(3)" in done.stderr and "Traceback" not in done.stderr


def test_sft_with_a_diverging_lr_stops(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "sft.main", "+backend=cpu", "trainer.lr=1e30", "trainer.total_steps=4",
           "validation.val_freq=0", "validation.validate_before_training=false", "trainer.save_model=false",
           f"trainer.output_dir={tmp_path}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 3, done.stderr[-2000:]
    assert "step 2: non-finite loss (nan) in the update phase; the run stopped" in done.stderr
    assert logged_steps(tmp_path)[-1]["step"] == 2


def test_first_nonfinite():
    assert first_nonfinite(torch.tensor([0.0, 1.0])) is None
    assert first_nonfinite(torch.tensor([0.0, float("-inf"), float("nan")])) == float("-inf")
    assert first_nonfinite(float("nan")) != first_nonfinite(float("nan"))  # NaN itself
    assert first_nonfinite(None) is None and first_nonfinite(3.0) is None


def test_guard_resets_its_count_on_a_good_step():
    guard = NonFiniteGuard("skip", max_in_a_row=2)
    bad, good = {("update", "loss"): float("inf")}, {("update", "loss"): 1.0}
    assert guard.check(bad) is None and guard.check(good) is None and guard.check(bad) is None
    assert guard.skipped == 2 and guard.in_a_row == 1
    assert "2 steps in a row" in guard.check(bad)
    assert NonFiniteGuard("stop").check(bad).startswith("non-finite loss (inf) in the update phase")


def test_collapse_watch_tells_a_dead_policy_from_an_equal_reward_batch(caplog):
    import math

    import torch

    from core.run.health import CollapseWatch, rewards_vary_within_groups

    uniform = math.log(100)  # 4.61 nats
    watch = CollapseWatch(vocab_size=100, patience=2)
    with caplog.at_level("WARNING", logger="tandem"):
        assert watch.check(1, 1.0, 0.5) is None
        assert watch.check(2, 2.0, 0.0) is None  # one zero step is not yet a pattern
        assert watch.check(3, 2.0, 0.0, rewards_vary=False) is None  # equal rewards: nothing to learn, warned
        assert watch.check(4, 2.0, 0.0, rewards_vary=False) is None
        assert "exactly 0 for 4 steps" in watch.check(5, 2.0, 0.0, rewards_vary=True)  # varying rewards: dead
        assert "uniform maximum" in watch.check(6, 0.99 * uniform, 0.5)
    assert caplog.text.count("nothing to learn from") == 1
    untrained = CollapseWatch(vocab_size=100)
    assert untrained.check(1, uniform, 0.5) is None and untrained.check(2, uniform, 0.5) is None  # random weights
    # groups 0 and 1: (1, 1) equal, (0, 1) varying
    assert rewards_vary_within_groups(torch.tensor([1.0, 1.0, 0.0, 1.0]), torch.tensor([0, 0, 1, 1]))
    assert not rewards_vary_within_groups(torch.tensor([1.0, 1.0, 0.0, 0.0]), torch.tensor([0, 0, 1, 1]))


def test_a_collapsed_policy_stops_the_run_unless_told_to_warn(tmp_path):
    done = run_demo(tmp_path / "stop", "trainer.lr=1e6", "trainer.total_steps=8")
    assert done.returncode == 3, done.stderr[-2000:]
    assert "the policy collapsed at step" in done.stderr and "Traceback" not in done.stderr
    warned = run_demo(tmp_path / "warn", "trainer.lr=1e6", "trainer.total_steps=8", "trainer.on_collapse=warn")
    assert warned.returncode == 0 and "the policy collapsed" in warned.stdout + warned.stderr
