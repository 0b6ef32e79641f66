"""A third-party backend, installed the way pip installs one (an entry point in a dist-info), runs
the CPU demo end to end without any change to core: `tests/plugins/fake_xpu`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGINS = Path(__file__).parent / "plugins"
pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def fake_xpu_installed(tmp_path) -> dict[str, str]:
    """The environment of a machine where `pip install fake-xpu` ran: its metadata on sys.path."""
    dist_info = tmp_path / "site" / "fake_xpu-0.1.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-xpu\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text("[tandem.backends]\nfake_xpu = fake_xpu\n")
    path = os.pathsep.join([str(PLUGINS), str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path, "COLUMNS": "200"}


def run(env, *args) -> subprocess.CompletedProcess:
    """`python -m args...`, its log and errors together in `.stdout`."""
    return subprocess.run([sys.executable, "-m", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=240, env=env)


def test_the_demo_runs_on_a_backend_core_has_never_heard_of(fake_xpu_installed, tmp_path):
    done = run(fake_xpu_installed, "core.main", "+backend=fake_xpu", "trainer.total_steps=3", "trainer.report=false",
               "trainer.save_model=false", f"trainer.output_dir={tmp_path / 'rl'}")
    assert done.returncode == 0, done.stdout[-3000:]
    assert "backend fake_xpu: fake XPU with 2 tiles" in done.stdout
    assert "fake_xpu engine: tiles=4" in done.stdout  # its own yaml, its own settings, its own engine hook
    sft = run(fake_xpu_installed, "sft.main", "+backend=fake_xpu", "trainer.total_steps=2", "trainer.save_model=false",
              "validation.val_freq=0", f"trainer.output_dir={tmp_path / 'sft'}")
    assert sft.returncode == 0, sft.stdout[-3000:]
    assert "fake_xpu engine: tiles=4" in sft.stdout  # SFT validation asks the same backend


def test_its_settings_are_checked_against_its_schema(fake_xpu_installed, tmp_path):
    for override, message in [("backend.settings.tiles=many", "backend.settings.tiles: Value 'many'"),
                              ("+backend.settings.tile=3", "backend.settings.tile: not a setting of backend fake_xpu")]:
        done = run(fake_xpu_installed, "core.main", "+backend=fake_xpu", override, f"trainer.output_dir={tmp_path / 'x'}")
        assert done.returncode == 2 and message in done.stdout, done.stdout[-2000:]
        assert "Traceback" not in done.stdout and not (tmp_path / "x").exists()
    doctor = run(fake_xpu_installed, "core.doctor", "+backend=fake_xpu")
    assert "selected backend  fake_xpu" in doctor.stdout and "available: fake XPU with 2 tiles" in doctor.stdout
