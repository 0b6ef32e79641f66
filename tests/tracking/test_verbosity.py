"""One switch for the libraries' detail: quiet by default (our lines and every warning), TANDEM_VERBOSE=1 for all."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from core.distributed.devices import cpu_threads
from core.tracking.verbosity import library_env, quiet_libraries


def test_quiet_by_default_and_everything_with_the_switch(monkeypatch):
    monkeypatch.delenv("TANDEM_VERBOSE", raising=False)
    assert library_env()["VLLM_LOGGING_LEVEL"] == "WARNING"  # vLLM's warnings and errors stay visible
    monkeypatch.setenv("TANDEM_VERBOSE", "1")
    assert library_env() == {"TANDEM_VERBOSE": "1"}  # passed on to workers, nothing lowered
    monkeypatch.setenv("TANDEM_VERBOSE", "0")
    assert "VLLM_LOGGING_LEVEL" in library_env()


def test_a_level_the_user_set_is_kept(monkeypatch):
    monkeypatch.delenv("TANDEM_VERBOSE", raising=False)
    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "DEBUG")
    quiet_libraries()
    assert os.environ["VLLM_LOGGING_LEVEL"] == "DEBUG"


def test_cpu_threads_default_to_one_and_follow_omp_num_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert cpu_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    assert cpu_threads() == 1


def _ray_run(tmp_path, name: str, **env) -> str:
    pytest.importorskip("ray")
    run_env = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    result = subprocess.run(
        [sys.executable, "-m", "core.main", "+backend=cpu", "trainer.launcher=ray", "trainer.n_gpus_per_node=2",
         "trainer.total_steps=2", "data.prompt_batch_size=4", "rollout.n=4", "trainer.report=false",
         f"trainer.output_dir={tmp_path / name}"],
        capture_output=True, text=True, timeout=200, env=run_env, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.mark.timeout(420)
def test_a_ray_run_prints_our_lines_only_unless_verbose(tmp_path):
    quiet = _ray_run(tmp_path, "quiet", TANDEM_VERBOSE="0")
    assert "done: 2 steps" in quiet and "run directory:" in quiet
    for noise in ("Token authentication", "Started a local Ray instance", "Loading weights", "\x1b["):
        assert noise not in quiet, f"{noise!r} in:\n{quiet}"
    verbose = _ray_run(tmp_path, "verbose", TANDEM_VERBOSE="1")
    assert "Started a local Ray instance" in verbose and "done: 2 steps" in verbose


def test_vllm_gets_a_bar_only_in_a_terminal(monkeypatch):
    import core.tracking.progress as progress

    # vLLM divides by the bar's elapsed time: a disabled bar (0 s) must never reach it
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: False, raising=False)
    assert progress.vllm_progress() is False
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: True, raising=False)
    assert progress.vllm_progress() is progress.vllm_bar
    bar = progress.vllm_bar(total=3, desc="Processed prompts", dynamic_ncols=True)
    assert bar.leave is False and bar.total == 3
    bar.close()


def test_bars_stay_out_of_a_log_though_tqdm_was_imported_first(monkeypatch):
    import io

    from tqdm import std
    from tqdm.auto import tqdm

    monkeypatch.setattr(std.tqdm, "__init__", vars(std.tqdm)["__init__"])  # undone after the test
    monkeypatch.setattr(std.tqdm, "_tandem_silenced", False, raising=False)
    monkeypatch.delenv("TANDEM_VERBOSE", raising=False)
    monkeypatch.setenv("TQDM_DISABLE", "1")  # what library_env() gives a process whose output is a file
    quiet_libraries()
    log = io.StringIO()
    for _ in tqdm(range(3), desc="de-quantising", file=log):  # a library's bar with no `disable` of its own
        pass
    assert log.getvalue() == ""
    asked = io.StringIO()
    for _ in tqdm(range(3), desc="ours", file=asked, disable=False):
        pass
    assert "ours" in asked.getvalue()  # a bar that decides for itself still does
