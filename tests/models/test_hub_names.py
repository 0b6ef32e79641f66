"""model.path as a Hugging Face Hub name ("org/name"): read from the local HF cache, offline-friendly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from core.models.builtin import materialize_builtin


@pytest.fixture
def hub_cache(tmp_path):
    """An HF cache holding `acme/tiny` (the builtin tiny model) in the hub's own layout."""
    cache = tmp_path / "hub"
    snapshot = cache / "models--acme--tiny" / "snapshots" / "0123abcd"
    shutil.copytree(materialize_builtin("tiny-qwen2"), snapshot)
    (cache / "models--acme--tiny" / "refs").mkdir()
    (cache / "models--acme--tiny" / "refs" / "main").write_text("0123abcd")
    return cache


def run_main(*args, cache, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "core.main", "+backend=cpu", *args], capture_output=True, text=True,
                          timeout=300, env=env, cwd=tmp_path)


def test_a_hub_name_in_the_cache_trains_offline(hub_cache, tmp_path):
    done = run_main("model.path=acme/tiny", "trainer.total_steps=1", "trainer.test_freq=0",
                    f"trainer.output_dir={tmp_path / 'run'}", cache=hub_cache, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-1500:]


def test_a_hub_name_not_in_the_cache_offline_is_one_line(hub_cache, tmp_path):
    done = run_main("model.path=acme/absent", "trainer.total_steps=1", cache=hub_cache, tmp_path=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "model.path 'acme/absent': no local path of that name, and not in the Hugging Face cache" in done.stderr
    assert "HF_HUB_OFFLINE" in done.stderr
