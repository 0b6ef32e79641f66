"""RUN_DIR/report.html: the run on one self-contained page (no file beside it, no script, no network).

The summary, the curves (report.png, embedded), the held-out evaluation (eval.md) and the sampled
completions with their rewards by step (samples.jsonl), each section present when its file is.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

MAX_SAMPLE_ROWS = 400  # the newest are kept: a long run's page stays small

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:75em}pre{background:#f6f6f6;padding:1em}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;vertical-align:top;text-align:left}
td.text{white-space:pre-wrap;font-family:monospace;max-width:40em}img{max-width:100%}"""


def write_html(run_dir: Path, summary: str) -> Path:
    """Write RUN_DIR/report.html from what the run left (atomically: a crash leaves the old page or none)."""
    parts = [f"<h1>{html.escape(run_dir.name)}</h1>", f"<pre>{html.escape(summary)}</pre>"]
    picture = run_dir / "report.png"
    if picture.is_file():
        encoded = base64.b64encode(picture.read_bytes()).decode()
        parts.append(f'<h2>Curves</h2><img alt="training curves" src="data:image/png;base64,{encoded}">')
    evaluation = run_dir / "eval.md"
    if evaluation.is_file():
        parts.append("<h2>Held-out evaluation</h2>" + _markdown_table(evaluation.read_text()))
    samples = _samples(run_dir / "samples.jsonl")
    if samples:
        rows = "".join(f"<tr><td>{s['step']}</td><td class=text>{html.escape(s['prompt'])}</td>"
                       f"<td class=text>{html.escape(s['response'])}</td><td>{s['reward']:.3g}</td></tr>"
                       for s in samples)
        parts.append("<h2>Samples</h2><p>The first response to each of a few prompts, as the run went.</p>"
                     f"<table><tr><th>step</th><th>prompt</th><th>response</th><th>reward</th></tr>{rows}</table>")
    page = (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>{html.escape(run_dir.name)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n")
    target = run_dir / "report.html"
    staging = target.with_suffix(".html.tmp")
    staging.write_text(page, encoding="utf-8")
    staging.replace(target)
    return target


def _samples(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a torn last line
            continue
    return rows[-MAX_SAMPLE_ROWS:]


def _markdown_table(text: str) -> str:
    """core.eval's markdown table as HTML (header, separator, rows); anything else as preformatted text."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip().startswith("|")]
    if len(lines) < 2:
        return f"<pre>{html.escape(text)}</pre>"

    def cells(line: str) -> list[str]:
        return [html.escape(cell.strip()) for cell in line.strip("|").split("|")]

    head = "".join(f"<th>{cell}</th>" for cell in cells(lines[0]))
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells(line)) + "</tr>" for line in lines[2:])
    return f"<table><tr>{head}</tr>{body}</table>"
