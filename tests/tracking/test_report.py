"""The run report: a PNG and a text summary from a recorded metrics.jsonl."""

import json
import shutil

import pytest

from core.errors import TandemError
from core.report import main, read_metrics, summary, write_report

RECORDED = "tests/fixtures/run_metrics.jsonl"  # 40 steps, validation at 1, 10, 20, 30, 40


@pytest.fixture
def run_dir(tmp_path):
    shutil.copy(RECORDED, tmp_path / "metrics.jsonl")
    return tmp_path


def test_report_png_and_summary(run_dir):
    text = write_report(run_dir)
    png = (run_dir / "report.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000
    assert "steps: 40 (1..40)" in text
    # 40 steps: the means of steps 1-4 and 37-40, the definition the final "done" line uses too
    assert "reward/mean: 0.1888 -> 0.6475 (mean of first -> last 4 points), best 0.7148 (step 35)" in text
    assert "val/reward: 0.1822 -> 0.6153 (first -> last), best 0.6153 (step 40)" in text
    assert "wall time: 2m21s" in text


def test_cli_prints_summary(run_dir, capsys):
    main([str(run_dir)])
    out = capsys.readouterr().out
    assert "steps: 40" in out and "report.png" in out


def test_a_resumed_run_keeps_the_last_values_of_a_step(tmp_path):
    lines = [{"step": 1, "reward/mean": 0.1}, {"step": 2, "reward/mean": 0.2}, {"step": 2, "reward/mean": 0.3}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    series, _ = read_metrics(tmp_path / "metrics.jsonl")
    assert series["reward/mean"] == [(1, 0.1), (2, 0.3)]


def test_missing_metrics_still_render(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "timing/step": 2.0}) + "\n")
    assert "seconds per step: 2 mean" in write_report(tmp_path)
    assert (tmp_path / "report.png").is_file()


def test_errors_name_the_file(tmp_path):
    with pytest.raises(TandemError, match="no metrics file at .*metrics.jsonl"):
        write_report(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"reward/mean": 1}\n')
    with pytest.raises(TandemError, match="metrics.jsonl: line 2 is not"):
        write_report(tmp_path)


def test_empty_summary():
    assert summary({}, []) == "no metrics recorded"


def test_an_sft_run_gets_sft_panels_with_every_one_recorded(tmp_path):
    from core.report import SFT_PANELS, _expand, panels_for

    lines = [{"step": 0, "val/loss": 5.8, "val/reward": 0.0, "val/exact_match": 0.0, "val/response_length": 7.9,
              "timing/val": 0.3}]
    lines += [{"step": s, "train/loss": 5.0 / s, "train/lr": 1e-3, "perf/tokens_per_s": 1e4, "timing/step": 0.1}
              for s in range(1, 5)]
    lines.append({"step": 4, "train/loss": 1.25, "train/lr": 1e-3, "perf/tokens_per_s": 1e4, "timing/step": 0.1,
                  "val/loss": 0.1, "val/reward": 0.97, "val/exact_match": 0.9, "val/response_length": 4.0, "timing/val": 0.3})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    series, _ = read_metrics(tmp_path / "metrics.jsonl")
    assert panels_for(series) is SFT_PANELS
    assert all(_expand(patterns, series) for _, patterns in SFT_PANELS)  # no "not recorded" panel
    text = write_report(tmp_path)
    assert "val/exact_match: 0 -> 0.9 (first -> last), best 0.9 (step 4)" in text
    assert "val/loss: 5.8 -> 0.1 (first -> last), best 0.1 (step 4)" in text  # a loss's best is its lowest


def test_the_done_line_and_the_report_agree_on_start_and_end(run_dir):
    from core.rl.loop import _summary

    series, _ = read_metrics(run_dir / "metrics.jsonl")
    history = [{"reward/mean": value, "timing/step": 1.0} for _, value in series["reward/mean"]]
    summary = _summary(history)
    assert f"reward/mean: {summary['reward_start']:.4g} -> {summary['reward_end']:.4g}" in write_report(run_dir)


def test_a_folder_of_runs_lists_them(tmp_path):
    for name in ("2026-12-01_10-00-00", "sft-2026-12-02_09-00-00"):
        (tmp_path / name).mkdir()
        shutil.copy(RECORDED, tmp_path / name / "metrics.jsonl")
    with pytest.raises(TandemError, match="is a folder of 2 runs") as err:
        write_report(tmp_path)
    assert "2026-12-01_10-00-00" in str(err.value) and "sft-2026-12-02_09-00-00" in str(err.value)
