"""report.html: one self-contained page of the run, with sampled completions and their rewards by step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html.parser import HTMLParser

from core.report import write_report

VOID = {"meta", "img", "br", "hr", "link", "input"}


class Checked(HTMLParser):
    """Tags balanced, no script, no external resource."""

    def __init__(self):
        super().__init__()
        self.open: list[str] = []
        self.problems: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.problems.append("a script")
        for name, value in attrs:
            if name in ("src", "href") and value and not value.startswith("data:"):
                self.problems.append(f"an external {name}: {value}")
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        if not self.open or self.open.pop() != tag:
            self.problems.append(f"unbalanced </{tag}>")

    def handle_data(self, data):
        self.text.append(data)


def test_the_page_shows_curves_evaluation_and_samples_safely(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    rows = [{"step": s, "time": 1.0 * s, "reward/mean": s / 10, "response_length/mean": 5.0} for s in range(1, 6)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    samples = [{"step": 1, "prompt": "Calculate 2 + 3.", "response": "<script>alert(1)</script> 5", "reward": 0.5},
               {"step": 5, "prompt": "Calculate 4 * 4.", "response": "16", "reward": 1.0}]
    (run / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples) + '{"step": 6, "pro')  # torn
    (run / "eval.md").write_text("| model | set | exact |\n|---|---|---|\n| base | heldout | 0.000 |\n")
    write_report(run)
    page = Checked()
    page.feed((run / "report.html").read_text())
    text = "".join(page.text)
    assert page.problems == [] and page.open == [], page.problems
    assert "<script>alert(1)</script> 5" in text  # shown as text, escaped in the page
    assert "Calculate 4 * 4." in text and "heldout" in text
    assert 'src="data:image/png;base64,' in (run / "report.html").read_text()


def test_a_run_writes_its_samples_and_page(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "core.main", "+backend=cpu", "trainer.total_steps=6",
                           "trainer.log_every=5", "trainer.test_freq=0", f"trainer.output_dir={tmp_path}"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-1500:]
    lines = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert sorted({line["step"] for line in lines}) == [1, 5] and len(lines) == 8  # 4 prompts at steps 1 and 5
    assert all(isinstance(line["reward"], float) and line["prompt"] for line in lines)
    assert f"report: {tmp_path / 'report.html'}" in done.stderr
