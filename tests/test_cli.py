"""`python -m core.main` as a user runs it: one clear line for each kind of bad input, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def run_main(*args: str, cwd=None, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", "core.main", *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd
    )


def assert_clean_failure(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_unknown_backend_lists_the_installed_ones(tmp_path):
    result = run_main("+backend=tpu", cwd=tmp_path)
    assert_clean_failure(result, "unknown backend 'tpu'", "cpu", "cuda", "rocm")
    assert result.returncode == 2


def test_backend_not_usable_here_says_why(tmp_path):
    result = run_main("+backend=rocm", cwd=tmp_path)
    assert_clean_failure(result, "backend 'rocm' cannot run here", "HIP")
    assert result.returncode == 2
    assert not (tmp_path / "runs").exists()  # nothing half-written


def test_a_misspelt_backend_setting_is_named_even_where_the_backend_cannot_run(tmp_path):
    result = run_main("+backend=rocm", "+backend.settings.sleep_falback=rebuild", cwd=tmp_path)
    assert_clean_failure(result, "backend.settings.sleep_falback: not a setting of backend rocm", "sleep_fallback")
    assert result.returncode == 2


@pytest.mark.parametrize("typo, named", [
    ("+backend.settings.weight_bukcet_mb=3", "backend.settings.weight_bukcet_mb: not a setting of backend cpu"),
    ("+trainer.totl_steps=3", "unknown config key: trainer.totl_steps (did you mean trainer.total_steps?)"),
])
def test_cfg_job_refuses_what_a_run_would(typo, named, tmp_path):
    """Hydra prints the config without calling the task; the checks a run makes first are made anyway."""
    result = run_main("+backend=cpu", typo, "--cfg", "job", cwd=tmp_path)
    assert_clean_failure(result, named)
    assert result.returncode == 2 and result.stdout == ""


def test_bad_config_key_names_it(tmp_path):
    assert_clean_failure(run_main("trainer.no_such_key=1", cwd=tmp_path), "no_such_key")


def test_bad_config_type_names_the_key(tmp_path):
    assert_clean_failure(run_main("trainer.total_steps=many", cwd=tmp_path), "total_steps")


def test_missing_model_path_names_it(tmp_path):
    result = run_main("model.path=/no/such/model", f"trainer.output_dir={tmp_path}/run", cwd=tmp_path)
    assert_clean_failure(result, "model.path '/no/such/model' does not exist")
    assert result.returncode == 2


def test_cfg_job_shows_the_detected_backend_and_writes_nothing(tmp_path):
    result = run_main("--cfg", "job", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "name: cpu" in result.stdout
    assert list(tmp_path.iterdir()) == []  # no outputs/, no .hydra/


@pytest.mark.parametrize("module", ["core.main", "sft.main"])
def test_cfg_job_after_overrides_without_a_backend(module, tmp_path):
    """The detected backend joins the other overrides, so argparse still accepts `--cfg job` after them."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", module, "trainer.total_steps=3", "--cfg", "job"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "total_steps: 3" in result.stdout and "name: cpu" in result.stdout


@pytest.mark.slow
def test_demo_run_from_any_directory_writes_metrics_and_model(tmp_path):
    result = run_main("trainer.total_steps=3", f"trainer.output_dir={tmp_path}/run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run" / "metrics.jsonl").is_file()
    assert (tmp_path / "run" / "final" / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_run_that_fails_before_writing_leaves_no_directory(tmp_path):
    result = run_main("trainer.loggers=[neptune]", f"trainer.output_dir={tmp_path}/run", cwd=tmp_path)
    assert_clean_failure(result, "unknown logger 'neptune'")
    assert list(tmp_path.iterdir()) == []


def test_one_value_for_a_list_key_is_a_one_item_list(tmp_path):
    """verl's command lines give one file as `data.train_files=path`: the file is read (here: named as missing),
    not refused as "str is not a ListConfig"."""
    result = run_main("+backend=cpu", "data=file", f"data.train_files={tmp_path / 'train.parquet'}", cwd=tmp_path)
    assert_clean_failure(result, f"data file not found: {tmp_path / 'train.parquet'}")
    job = run_main("+backend=cpu", "trainer.loggers=jsonl", "data.val_files=a.jsonl,b.jsonl", "--cfg", "job", cwd=tmp_path)
    assert job.returncode == 0, job.stderr
    assert "loggers:\n  - jsonl\n" in job.stdout and "val_files:\n  - a.jsonl\n  - b.jsonl\n" in job.stdout


def test_list_keys_and_their_rewriting():
    from core.config.cli_lists import list_keys, single_values_as_lists
    from core.config.schema import TandemConfig

    assert {"data.train_files", "trainer.loggers", "rollout.cudagraph_capture_sizes"} <= list_keys(TandemConfig)
    argv = ["data.train_files=a.parquet", "+data.val_files=[b]", "rollout.cudagraph_capture_sizes=null",
            "rollout.n=2", "--cfg", "job"]
    assert single_values_as_lists(argv, TandemConfig) == [
        "data.train_files=[a.parquet]", "+data.val_files=[b]", "rollout.cudagraph_capture_sizes=null",
        "rollout.n=2", "--cfg", "job"]


def test_logs_piped_to_a_file_read_cleanly(tmp_path):
    """Not a terminal: plain timed lines, no progress-bar frames (\\r), no path split by wrapping at 80 columns."""
    run_dir = tmp_path / ("a-directory-name-long-enough-that-a-wrapping-logger-would-split-it-" * 2).rstrip("-")
    result = run_main("+backend=cpu", "trainer.total_steps=2", "trainer.test_freq=0", f"trainer.output_dir={run_dir}",
                      cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout + result.stderr
    assert "\r" not in text and "\x1b[" not in text
    assert str(run_dir / "metrics.jsonl") in text  # on one line


@pytest.mark.parametrize("module", ["core.main", "sft.main"])
def test_help_lists_every_installed_backend(module, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path, env=env)
    assert result.returncode == 0 and "backend: cpu, cuda, rocm\n" in result.stdout, result.stdout[:1500]
