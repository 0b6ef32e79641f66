"""RUN_DIR/samples.jsonl: a few completions with their rewards as training goes, what the curves cannot
show (a rising reward that is a reward hack, a format the model settled on). The report's HTML page
(core.report_html) lays them out by step.

One line per sample: {"step", "time", "prompt", "response", "reward"}; the first response of each of the
first `per_step` prompts, at step 1 and then every `every` steps (the console table's rhythm). A resumed
run rewinds the file with the metrics.
"""

from __future__ import annotations

from pathlib import Path

import torch

from core.rollout.base import RolloutOutput
from core.tracking.loggers import JsonlLogger


class SampleLog:
    def __init__(self, run_dir: Path, every: int, per_step: int = 4):
        self.every, self.per_step = max(1, every), per_step
        self._file = JsonlLogger(run_dir, "samples.jsonl")

    def log(self, step: int, output: RolloutOutput, scores: torch.Tensor, tokenizer) -> None:
        if step % self.every and step != 1:
            return
        group_ids = output.group_ids.tolist()
        firsts = [row for row, group in enumerate(group_ids) if row == 0 or group_ids[row - 1] != group]
        for row in firsts[: self.per_step]:
            response = output.response_ids[row][output.response_mask[row]].tolist()
            self._file.log({"prompt": tokenizer.decode(output.prompt_ids[row], skip_special_tokens=True),
                            "response": tokenizer.decode(response, skip_special_tokens=True),
                            "reward": float(scores[row])}, step)

    def rewind(self, step: int) -> None:
        self._file.rewind(step)

    def close(self) -> None:
        self._file.close()
