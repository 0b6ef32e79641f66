"""What every training run holds besides its algorithm, for RL and SFT alike: the run directory and its lock,
the tracker (and RL's sample log), the stop at SIGTERM, resuming, checkpoints, the final model and the report.

    with RunSession(cfg) as session:               # claims trainer.output_dir, opens the tracker
        workers = session.enter_context(...)        # anything else to close with the run
        first_step, loop_state = session.resume(workers)
        session.preemption.begin_steps()
        for step in range(first_step, total + 1):
            ...
            session.log(metrics, step)
            session.checkpoint_if_due(step, workers, lambda: loop_state)
        summary = session.finish(workers, summary)
    session.write_report(summary)                   # after the tracker is closed: it reads metrics.jsonl

Under torchrun every rank opens a session; only the main rank (`main_rank=True`) claims the directory and
logs, every rank takes part in checkpoints and the final model (their collectives need all).
"""

from __future__ import annotations

import logging
import shutil
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf

from core.checkpoint.manager import resolve_resume
from core.report import report_pages, write_report
from core.tracking.run_dir import CONFIG_FILE, claim_run_dir
from core.tracking.samples import SampleLog
from core.tracking.tracker import Tracker
from core.run.preemption import Preemption

log = logging.getLogger("tandem")


class RunSession(ExitStack):
    """An ExitStack whose first entries are the run's own (left last, whatever fails after them)."""

    def __init__(self, cfg: DictConfig, main_rank: bool = True, with_samples: bool = False,
                 save_last_step: bool = False):
        super().__init__()
        self.trainer = cfg.trainer
        self.run_dir = Path(cfg.trainer.output_dir)
        self.checkpoints = self.run_dir / "checkpoints"
        self.main_rank = main_rank
        self.save_last_step = save_last_step  # SFT checkpoints its last step too; RL's final model is enough
        self._config = OmegaConf.to_container(cfg, resolve=True)
        self._with_samples = with_samples
        self.tracker: Tracker | None = None
        self.samples: SampleLog | None = None  # a few completions and rewards by step, for the report

    def __enter__(self) -> "RunSession":
        super().__enter__()
        try:
            # entered first, left last: a second signal during the clean-up still exits at once
            self.preemption = self.enter_context(Preemption())
            if self.main_rank:
                self._open_run_dir()
        except BaseException:  # what was entered is left as it would be at the end of a failed run
            if not self.__exit__(*sys.exc_info()):
                raise
        return self

    def _open_run_dir(self) -> None:
        trainer, run_dir = self.trainer, self.run_dir
        if not run_dir.exists():  # a run that fails before writing anything leaves no directory behind
            self.push(lambda exc_type, *_: _discard_unused_run_dir(run_dir, exc_type))
        self.enter_context(claim_run_dir(run_dir, trainer.resume, self._config, trainer.resume_force))
        log.info("run directory: %s", run_dir.resolve())
        self.tracker = Tracker(list(trainer.loggers), run_dir, self._config, project=trainer.project_name,
                               run_name=trainer.experiment_name, console_every=trainer.log_every)
        self.callback(self.tracker.close)
        if self._with_samples:
            self.samples = SampleLog(run_dir, trainer.log_every)
            self.callback(self.samples.close)

    def resume(self, workers) -> tuple[int, dict]:
        """(the first step to run, the loop's state saved with the checkpoint, {} without one). The logs lose
        the steps after the checkpoint (all of them without one): they are run and logged again."""
        path = resolve_resume(self.trainer.resume, self.checkpoints)
        state = workers.load_checkpoint(str(path)) if path is not None else None
        last_step = state["step"] if state else -1
        if state:
            log.info("resumed from %s (step %d)", path, last_step)
        if self.trainer.resume != "never":
            for log_file in (self.tracker, self.samples):
                if log_file is not None:
                    log_file.rewind(last_step)
        return (last_step + 1, state["trainer"]) if state else (1, {})

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.tracker is not None:
            self.tracker.log(metrics, step)

    def checkpoint_if_due(self, step: int, workers, loop_state: Callable[[], dict], last_step: bool = False) -> None:
        """Save every `trainer.save_freq` steps and at a stop; at a stop (agreed by every rank), end the run here."""
        saved, stopping = None, self.preemption.agreed()
        freq = self.trainer.save_freq
        if freq > 0 and (step % freq == 0 or stopping or (last_step and self.save_last_step)):
            saved = workers.save_checkpoint(str(self.checkpoints), step, loop_state())
            if self.main_rank:
                log.info("saved step %d -> %s", step, saved)
        if stopping:  # SIGTERM / Ctrl-C: this step is done and saved
            raise self.preemption.stop(step, saved)

    def finish(self, workers, summary: dict) -> dict:
        """The final model (trainer.save_model) and where everything was written, into `summary`."""
        if self.tracker is not None:
            summary["locations"] = self.tracker.locations()
        if self.trainer.save_model:
            final_dir = self.run_dir / "final"
            workers.save_model(str(final_dir))
            summary["final_model"] = str(final_dir)
        return summary

    def write_report(self, summary: dict) -> dict:
        """report.png and report.html from metrics.jsonl; call once the session is closed (the log complete)."""
        if self.main_rank and self.trainer.report and "jsonl" in self.trainer.loggers:
            summary["report"] = write_report(self.run_dir)
            summary.setdefault("locations", []).extend(f"report: {page}" for page in report_pages(self.run_dir))
        return summary


def _discard_unused_run_dir(run_dir: Path, exc_type) -> bool:
    """After a failure, remove the run's new directory if it holds nothing but empty files (and the
    config it was started with)."""
    if exc_type is not None and all(p.is_file() and (p.stat().st_size == 0 or p.name == CONFIG_FILE)
                                    for p in run_dir.rglob("*")):
        shutil.rmtree(run_dir, ignore_errors=True)
    return False  # the error propagates
