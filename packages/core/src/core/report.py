"""A run's report: RUN_DIR/report.png with the training curves, and a short text summary.

    python -m core.report RUN_DIR

Reads RUN_DIR/metrics.jsonl (written by the `jsonl` logger); callable as `write_report(run_dir)`
at the end of training.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import math
from pathlib import Path

from core.errors import TandemError, exit_on_user_error
from core.report_html import write_html

log = logging.getLogger("tandem")
Series = dict[str, list[tuple[int, float]]]  # metric -> [(step, value)] in step order

# (panel title, metrics drawn in it); "val/*" and "timing/*" are expanded from what was recorded
RL_PANELS = (
    ("Reward (train)", ("reward/mean",)),
    ("Validation reward", ("val/*",)),
    ("Response length (tokens)", ("response_length/mean",)),
    ("KL to reference", ("actor/kl",)),
    ("Entropy", ("actor/entropy",)),
    ("Seconds per phase", ("timing/*",)),
)
SFT_PANELS = (  # an SFT run (`python -m sft.main`) logs train/loss instead of rewards
    ("Loss (train, validation)", ("train/loss", "val/loss")),
    ("Validation reward", ("val/reward", "val/exact_match")),
    ("Learning rate", ("train/lr",)),
    ("Training tokens/s", ("perf/tokens_per_s",)),
    ("Validation response length (tokens)", ("val/response_length",)),
    ("Seconds (train step, validation)", ("timing/step", "timing/val")),
)
# panels of quantities that are never negative: drawn from zero, so noise in a flat curve stays small
FROM_ZERO = ("Seconds", "Response length", "Validation response length", "Training tokens/s", "Learning rate")
SUMMARISED = ("reward/mean", "val/reward", "val/exact_match", "train/loss", "val/loss")  # first, last, best


def start_and_end(values: list[float]) -> tuple[float, float]:
    """The means of the first and of the last tenth of `values` (at least one value each).

    The one definition of "from X to Y" that the final log line and the report both print: a tenth
    smooths per-step sampling noise, and a few validation points reduce to the first and last.
    """
    window = max(1, len(values) // 10)
    return sum(values[:window]) / window, sum(values[-window:]) / window


def panels_for(series: Series) -> tuple:
    return SFT_PANELS if "train/loss" in series and "reward/mean" not in series else RL_PANELS


def read_metrics(path: Path) -> tuple[Series, list[float]]:
    """Every metric's (step, value) series, plus the recorded unix times; a re-logged step keeps its last values."""
    if not path.is_file():
        raise TandemError(f"no metrics file at {path}; was the run started with the 'jsonl' logger?")
    by_step: dict[int, dict] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            step = int(record.pop("step"))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise TandemError(f"{path}: line {number} is not a {{\"step\": int, ...}} JSON object") from exc
        by_step[step] = record  # a resumed run re-logs steps: the later line wins
    series: Series = {}
    times = []
    for step in sorted(by_step):
        for name, value in by_step[step].items():
            if name == "time":
                times.append(value)
            elif isinstance(value, (int, float)) and math.isfinite(value):
                series.setdefault(name, []).append((step, float(value)))
    return series, times


def summary(series: Series, times: list[float]) -> str:
    steps = sorted({step for points in series.values() for step, _ in points})
    if not steps:
        return "no metrics recorded"
    lines = [f"steps: {len(steps)} ({steps[0]}..{steps[-1]})"]
    if len(times) > 1:
        lines.append(f"wall time: {_duration(max(times) - min(times))}")
    for name in SUMMARISED:
        points = series.get(name)
        if points:
            best_step, best = (min if name.endswith("loss") else max)(points, key=lambda p: p[1])
            start, end = start_and_end([value for _, value in points])
            span = "first -> last" if len(points) < 20 else f"mean of first -> last {max(1, len(points) // 10)} points"
            lines.append(f"{name}: {start:.4g} -> {end:.4g} ({span}), best {best:.4g} (step {best_step})")
    if "timing/step" in series:
        values = [v for _, v in series["timing/step"]]
        lines.append(f"seconds per step: {sum(values) / len(values):.3g} mean")
    return "\n".join(lines)


def plot(series: Series, out_path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 8), constrained_layout=True)
    for ax, (panel_title, patterns) in zip(axes.flat, panels_for(series)):
        names = _expand(patterns, series)
        ax.set_title(panel_title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if not names:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes, color="gray")
            continue
        for name in names:
            steps, values = zip(*series[name])
            if len(names) == 1 and len(values) > 10:  # noisy single curve: raw faint, smoothed bold
                line = ax.plot(steps, values, alpha=0.3)[0]
                ax.plot(steps, _moving_average(values), color=line.get_color(), label=f"{name} (moving avg)")
            else:
                ax.plot(steps, values, marker="o" if len(values) < 30 else None, markersize=3, label=name)
        if panel_title.startswith(FROM_ZERO):
            ax.set_ylim(0, max(ax.get_ylim()[1], 1e-9) * 1.25)  # from zero, with room for the legend
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)


def runs_under(folder: Path) -> list[Path]:
    """The run directories (holding a metrics.jsonl) below `folder`, newest first."""
    found = [path.parent for path in folder.glob("**/metrics.jsonl")]
    return sorted(found, key=lambda run: (run / "metrics.jsonl").stat().st_mtime, reverse=True)


def write_report(run_dir: str | Path) -> str:
    """Write RUN_DIR/report.png and report.html (core.report_html), and return the text summary."""
    run_dir = Path(run_dir)
    if not (run_dir / "metrics.jsonl").is_file() and run_dir.is_dir() and runs_under(run_dir):
        runs = runs_under(run_dir)
        listing = "\n".join(f"  {run}" for run in runs[:20]) + (f"\n  ... and {len(runs) - 20} more" if len(runs) > 20 else "")
        raise TandemError(f"{run_dir} is a folder of {len(runs)} runs, not one run; report one of them "
                          f"(newest first):\n{listing}")
    series, times = read_metrics(run_dir / "metrics.jsonl")
    text = summary(series, times)
    _unless_disk_full(lambda: plot(series, run_dir / "report.png", title=run_dir.name), run_dir / "report.png")
    _unless_disk_full(lambda: write_html(run_dir, text), run_dir / "report.html.tmp")
    evaluation = run_dir / "eval.md"  # core.eval's table: base vs trained on held-out questions
    if evaluation.is_file():
        text += "\nheld-out evaluation (greedy):\n" + evaluation.read_text().rstrip()
    return text


def report_pages(run_dir: str | Path) -> list[Path]:
    """The report files a run has (report.png, report.html): those a full disk let through."""
    return [page for page in (Path(run_dir) / "report.png", Path(run_dir) / "report.html") if page.is_file()]


def _unless_disk_full(write, leftover: Path) -> None:
    """A full disk at the very end loses a report page, not the run (its model and metrics are saved):
    a warning, and no half-written `leftover`."""
    try:
        write()
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        leftover.unlink(missing_ok=True)
        log.warning("%s not written: no space left on the device (the metrics and model are saved)",
                    leftover.name.removesuffix(".tmp"))


def _expand(patterns: tuple[str, ...], series: Series) -> list[str]:
    names = []
    for pattern in patterns:
        if not pattern.endswith("/*"):
            names += [pattern] if pattern in series else []
            continue
        prefix = pattern[:-1]
        matches = sorted(name for name in series if name.startswith(prefix))
        if prefix == "val/":  # the scores, not the error counts or lengths
            matches = [name for name in matches if name.endswith(("/reward", "/best_of_n"))]
            if "val/reward" in matches and len([name for name in matches if name.endswith("/reward")]) == 2:
                matches.remove("val/reward")  # one data source: its curve is the overall one
        if prefix == "timing/":  # the phases; the whole step only when no phase was timed
            matches = [name for name in matches if name != "timing/step"] or matches
        names += matches
    return names


def _moving_average(values) -> list[float]:
    """Centred, so the smoothed curve doesn't lag; the window is a tenth of the run (odd, at least 3)."""
    import numpy as np

    window = max(3, len(values) // 10) | 1
    padded = np.pad(np.asarray(values, dtype=float), window // 2, mode="edge")
    return np.convolve(padded, np.ones(window) / window, mode="valid").tolist()


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m core.report", description="Plot a run's metrics.jsonl.")
    parser.add_argument("run_dir")
    args = parser.parse_args(argv)
    print(write_report(args.run_dir))
    print(f"report: {Path(args.run_dir) / 'report.png'}, {Path(args.run_dir) / 'report.html'}")


if __name__ == "__main__":
    main()
