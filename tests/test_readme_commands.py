"""The README's training commands, as written: each composes and passes the checks a run makes first
(`--cfg job`: unknown keys, backend settings, installed backend), on any machine. The ones that name the CPU
(or nothing: the demo) also run, with a few steps, in the slow tier.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
PROGRAMS = {"python -m core.main": "core.main", "python -m sft.main": "sft.main", "tandem train": "core.main",
            "tandem sft": "sft.main"}


def readme_commands() -> list[str]:
    """Every `python -m core.main|sft.main` / `tandem train|sft` line of the README's bash blocks, without its
    comment."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.DOTALL):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if any(line.startswith(program) for program in PROGRAMS):
                commands.append(line)
    return commands


def as_module_call(command: str) -> list[str]:
    program = next(p for p in PROGRAMS if command.startswith(p))
    return [sys.executable, "-m", PROGRAMS[program], *shlex.split(command[len(program):])]


def run(argv: list[str], cwd: Path, timeout: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def test_the_readme_shows_training_commands():
    assert len(readme_commands()) >= 15


@pytest.mark.parametrize("command", readme_commands())
def test_each_readme_command_composes(command, tmp_path):
    argv = as_module_call(command)
    if "--cfg" not in argv:
        argv += ["--cfg", "job"]
    result = run(argv, tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-1500:]


CPU_RUNS = [c for c in readme_commands()  # the demos: they need no GPU, data or model files
            if "+backend" not in c and "data=" not in c and "--cfg" not in c]
# a real model on the CPU, as the README gives it: ~2 minutes and ~7 GB here, so outside `make test`'s budget
REAL_CPU_RUNS = [c for c in readme_commands() if "+backend=cpu" in c and "+experiment=" in c and "--cfg" not in c]


@pytest.mark.slow
@pytest.mark.parametrize("command", CPU_RUNS)
def test_cpu_readme_commands_run(command, tmp_path):
    argv = as_module_call(command) + ["+backend=cpu", "trainer.total_steps=2", f"trainer.output_dir={tmp_path / 'run'}"]
    result = run(argv, tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-1500:]


@pytest.mark.heavy
@pytest.mark.parametrize("command", REAL_CPU_RUNS)
def test_real_model_readme_commands_run_on_this_cpu(command, tmp_path):
    """As written (its own steps and sizes), in a fresh directory; the packaged model is imported on first use."""
    result = run(as_module_call(command) + [f"trainer.output_dir={tmp_path / 'run'}"], tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-1500:]
    assert "done: 2 steps" in result.stderr + result.stdout
