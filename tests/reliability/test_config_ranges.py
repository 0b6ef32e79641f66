"""A value outside its range fails before anything runs, in one line naming the key and the range."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from core.config.ranges import check_ranges
from core.errors import TandemError

BAD = [
    ("rollout.n=0", "rollout.n=0 is out of range: it must be an integer >= 1"),
    ("data.prompt_batch_size=0", "data.prompt_batch_size=0"),
    ("rollout.max_tokens=0", "rollout.max_tokens=0"),
    ("trainer.micro_batch_size=0", "trainer.micro_batch_size=0"),
    ("trainer.lr=-1", "trainer.lr=-1.0 is out of range: it must be a finite number > 0"),
    ("rollout.temperature=-0.5", "rollout.temperature=-0.5"),
    ("trainer.total_steps=0", "trainer.total_steps=0"),
    ("rollout.top_p=1.5", "rollout.top_p=1.5 is out of range: it must be in (0, 1]"),
    ("trainer.device=tpu", "trainer.device=tpu is out of range: it must be auto, cpu or a torch device (cuda, cuda:1, xpu...)"),
    ("reward.timeout_s=0", "reward.timeout_s=0.0"),
    ("rollout.gpu_memory_utilization=1.2", "rollout.gpu_memory_utilization=1.2 is out of range: it must be in (0, 1]"),
    ("rollout.sleep_level=3", "rollout.sleep_level=3 is out of range: it must be 1 (weights to the CPU) or 2"),
    # files given to the built-in task would be ignored (verl users set only the files)
    ("data.train_files=[train.parquet]", "data.train_files set, but data.task=repeat_letters generates its own data "
                                         "and would ignore them; add data=file to train on the files"),
    ("data.task=file", "data.task=file keeps the demo's reward (reward.reward_fn=repeat_letters) and its 3-token "
                       "replies; use data=file"),
    ("data.val_files=[test.parquet]", "data.val_files set, but data.task=repeat_letters"),
    ("data.few_shot=[{user: x}]", "data.few_shot=[{'user': 'x'}] is out of range: it must be a list of {user: ..., "
                                  "assistant: ...} examples"),
]


@pytest.mark.parametrize("override, message", BAD, ids=[b[0] for b in BAD])
def test_bad_values_name_the_key_and_range(override, message, compose_config):
    with pytest.raises(TandemError) as info:
        check_ranges(compose_config(override, "+backend=cpu"))
    assert message in str(info.value)


@pytest.mark.parametrize("override, message", [
    ("algorithm.policy_loss=clip", "algorithm.policy_loss=clip is out of range: it must be one of ppo_clip, gspo"),
    ("algorithm.kl_coef=-1", "algorithm.kl_coef=-1.0 is out of range: it must be a finite number >= 0"),
])
def test_the_algorithms_keys_have_their_rules_with_the_algorithms(override, message, compose_config, tmp_path):
    """One rule per key (core.algorithms.spec), in the same words, before anything starts."""
    from core.algorithms.spec import check_algorithm_config

    with pytest.raises(TandemError, match=message):
        check_algorithm_config(compose_config(override, "+backend=cpu").algorithm)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "core.main", override, f"trainer.output_dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2 and done.stderr.strip().endswith(message.split(", gspo")[0] + (
        ", gspo, cispo, clip_cov, kl_cov, reinforce, gpg" if "policy_loss" in override else ""))


def test_every_shipped_option_is_in_range(compose_config):
    for override in ["", "data=reasoning_gym", "+experiment=smollm2_arithmetic", "algorithm=ppo"]:
        check_ranges(compose_config(*[o for o in [override] if o], "+backend=cpu"))


def test_the_cli_refuses_before_starting(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "core.main", "rollout.n=0", f"trainer.output_dir={tmp_path / 'run'}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().endswith("rollout.n=0 is out of range: it must be an integer >= 1")
    assert not (tmp_path / "run").exists()
