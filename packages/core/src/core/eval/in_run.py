"""Evaluation inside a training run: the base model before the first step, the trained one at the last,
written to RUN_DIR/eval.json and RUN_DIR/eval.md (the report shows the table); the loop logs the eval/*
metrics with step 0's and the last step's."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from core.eval.runner import evaluate
from core.eval.scoring import question_marker
from core.eval.sets import eval_sets
from core.eval.table import markdown

log = logging.getLogger("tandem")
RESULTS_FILE = "eval.json"
TABLE_FILE = "eval.md"
ENTROPY_FLOOR = 0.2  # "no collapse": the last steps' entropy keeps this share of the first steps'


class RunEvaluation:
    """`evaluation.run(label, engine, tokenizer, step)` at the start ("base") and end ("final") of a run."""

    def __init__(self, cfg, sets, run_dir: Path):
        self.sets = sets
        self.max_tokens = int(cfg.eval.max_tokens or cfg.rollout.max_tokens)
        self.pass_k, self.temperature = int(cfg.eval.pass_k), float(cfg.eval.temperature)
        self.cut_at = question_marker(cfg.data.prompt_template)
        self.stop = tuple(cfg.rollout.stop)
        self.model = str(cfg.model.path)
        self.path = Path(run_dir) / RESULTS_FILE
        self.results = json.loads(self.path.read_text()) if self.path.is_file() else {}  # kept across a resume

    @classmethod
    def for_run(cls, cfg, tokenizer, run_dir: Path) -> "RunEvaluation | None":
        """None when `eval.enabled` is off or the task has no held-out questions (the builtin demo)."""
        if not cfg.eval.enabled:
            return None
        sets = eval_sets(cfg.data, cfg.eval, tokenizer)
        if not sets:
            log.info("eval: data.task=%s has no held-out set; set data.val_files to evaluate", cfg.data.task)
            return None
        for eval_set in sets:
            log.info("eval: %s set, %d questions (%d drawn ones dropped as seen in training or validation)",
                     eval_set.name, len(eval_set.dataset), eval_set.dropped)
        return cls(cfg, sets, run_dir)

    @property
    def has_base(self) -> bool:
        return "base" in self.results

    def run(self, label: str, engine, tokenizer, step: int) -> dict[str, float]:
        """Evaluate what `engine` holds now (inside the workers' rollout context) as `label`; returns the metrics."""
        result = evaluate(engine, self.sets, tokenizer, self.max_tokens, self.pass_k, self.temperature, self.cut_at,
                          self.stop)
        self.results[label] = {"model": self.model if label == "base" else label, "step": step,
                               "metrics": result.metrics, "examples": result.examples}
        self._write()
        return result.metrics

    def record_health(self, entropies: list[float]) -> None:
        """The run's entropy at its start and end (means of the first and last tenth of the steps)."""
        from core.report import start_and_end

        if not entropies:
            return
        start, end = start_and_end(entropies)
        ratio = end / start if start > 0 else float("nan")
        self.results["entropy"] = {"start": start, "end": end, "min": min(entropies), "end_over_start": ratio,
                                   "collapsed": not ratio >= ENTROPY_FLOOR}
        self._write()

    def table(self) -> str:
        rows = [(self.results[label]["model"] if label == "base" else "trained", self.results[label]["metrics"])
                for label in ("base", "final") if label in self.results]
        text = markdown(rows)
        entropy = self.results.get("entropy")
        if entropy:
            verdict = "COLLAPSED" if entropy["collapsed"] else f"no collapse (floor {ENTROPY_FLOOR:.0%})"
            text += (f"\n\nentropy: {entropy['start']:.3f} -> {entropy['end']:.3f} "
                     f"({entropy['end_over_start']:.0%} of the start; {verdict})")
        return text

    def _write(self) -> None:
        self.path.write_text(json.dumps(self.results, indent=1))
        (self.path.parent / TABLE_FILE).write_text(self.table() + "\n")
