"""Evaluation tables: base and trained models side by side, exact and format-insensitive, and several
seeds as mean ± standard deviation."""

from __future__ import annotations

import statistics

SCORES = (("exact", "exact"), ("lenient", "format-insensitive"))


def set_names(metrics: dict[str, float]) -> list[str]:
    names = {key.split("/")[1] for key in metrics if key.startswith("eval/") and key.endswith("/exact")}
    return sorted(names, key=lambda name: (name != "heldout", name))


def pass_columns(metrics: dict[str, float]) -> list[str]:
    return sorted({key.split("/")[2] for key in metrics if key.startswith("eval/") and "/pass@" in key})


def markdown(rows: list[tuple[str, dict[str, float]]]) -> str:
    """One line per (model, set): `rows` are (label, eval metrics) in the order to print; several runs of one
    recipe can be given as one row of `mean_and_spread`'s output ((mean, deviation) pairs)."""
    sets = sorted({name for _, metrics in rows for name in set_names(metrics)}, key=lambda n: (n != "heldout", n))
    passes = sorted({column for _, metrics in rows for column in pass_columns(metrics)})
    header = ["model", "set", "questions", *(title for _, title in SCORES), *passes, "reply tokens"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, metrics in rows:
        for name in sets:
            if f"eval/{name}/exact" not in metrics:
                continue
            cells = [label, name, _text(metrics.get(f"eval/{name}/questions"), 0)]
            cells += [_text(metrics[f"eval/{name}/{key}"], 3) for key, _ in SCORES]
            cells += [_text(metrics.get(f"eval/{name}/{column}"), 3) for column in passes]
            cells.append(_text(metrics.get(f"eval/{name}/response_length"), 1))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mean_and_spread(runs: list[dict[str, float]]) -> dict[str, str]:
    """Each eval metric of several runs as (mean, sample standard deviation); one run: its value."""
    keys = set.intersection(*(set(run) for run in runs)) if runs else set()
    merged = {}
    for key in sorted(k for k in keys if k.startswith("eval/")):
        values = [run[key] for run in runs]
        mean = statistics.fmean(values)
        merged[key] = mean if len(values) == 1 or key.endswith("/questions") else (mean, statistics.stdev(values))
    return merged


def _text(value, digits: int) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple):
        return f"{value[0]:.{digits}f} ± {value[1]:.{digits}f}"
    return f"{value:.{digits}f}"
