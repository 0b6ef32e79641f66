"""Installed wheels carry what editable installs read from the tree: configs and the Hydra plugin."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_core_wheel_ships_configs_and_searchpath_plugin(tmp_path):
    source = shutil.copytree(ROOT / "packages" / "core", tmp_path / "core", ignore=shutil.ignore_patterns("build"))
    subprocess.run(  # built from a copy: setuptools writes build/ next to the sources
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(source)],
        check=True, capture_output=True, timeout=240,
    )
    (wheel,) = tmp_path.glob("tandem_core-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for config in ("config.yaml", "backend/cpu.yaml", "algorithm/grpo.yaml"):
        assert f"core/conf/{config}" in names, config
    assert "hydra_plugins/tandem_searchpath/__init__.py" in names


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["cuda", "rocm"])
def test_backend_wheels_ship_their_config_and_entry_point(tmp_path, backend):
    package = ROOT / "packages" / f"backend-{backend}"
    source = shutil.copytree(package, tmp_path / backend, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(source)],
        check=True, capture_output=True, timeout=240,
    )
    (wheel,) = tmp_path.glob(f"tandem_backend_{backend}-*.whl")
    archive = zipfile.ZipFile(wheel)
    assert f"backend_{backend}/conf/backend/{backend}.yaml" in archive.namelist()
    (entry_points,) = [n for n in archive.namelist() if n.endswith("entry_points.txt")]
    assert f"[tandem.backends]\n{backend} = backend_{backend}.backend" in archive.read(entry_points).decode()


def test_top_level_conf_is_the_packaged_one():
    assert (ROOT / "conf").resolve() == (ROOT / "packages" / "core" / "src" / "core" / "conf").resolve()


def test_the_tandem_command_runs_each_entry_point(tmp_path):
    """`tandem train ...` is `python -m core.main ...` (and so on), installed on PATH beside the interpreter."""
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="tandem")
    assert script.value == "core.cli:main"
    tandem = shutil.which("tandem", path=str(Path(sys.executable).parent))
    assert tandem, "tandem is not installed beside this interpreter: pip install -e packages/core"
    job = subprocess.run([tandem, "train", "+backend=cpu", "--cfg", "job"], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert job.returncode == 0 and "name: cpu" in job.stdout, job.stderr
    (tmp_path / "my_rewards.py").write_text("def score(sample):\n    return 1.0\n")
    own = subprocess.run([tandem, "train", "+backend=cpu", "trainer.total_steps=1", "trainer.test_freq=0",
                          "reward.reward_fn=my_rewards:score", f"trainer.output_dir={tmp_path / 'run'}"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert own.returncode == 0, own.stderr[-1500:]  # the reward module is found in the working directory
    unknown = subprocess.run([tandem, "trian"], capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "unknown command 'trian'" in unknown.stderr and "train" in unknown.stderr
