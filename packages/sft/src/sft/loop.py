"""The SFT loop, top to bottom: start the workers (sft/worker.py: data, model, validation engine on
every rank), then train steps with validation by generation every `validation.val_freq` steps and
at the end, checkpoints every `trainer.save_freq`, then export the final model as an HF directory.

The loop is the controller: it holds the data order (sampler), the tracker and the summary, and
drives the workers through a core worker group, so the same code runs one in-process worker, one
per torchrun rank (each rank's loop drives its own), or one Ray actor per GPU (`trainer.launcher=ray`).
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from core.checkpoint.manager import resolve_resume
from core.data.rl_dataset import EpochSampler
from core.distributed.collectives import world
from core.errors import RunDied, TandemError
from core.plugins.manager import load_backend
from core.report import report_pages, write_report
from core.trainer.setup import process_group_backend, resolve_device
from core.trainer.health import NonFiniteGuard
from core.trainer.preemption import Preemption
from core.tracking.run_dir import claim_run_dir
from core.tracking.tracker import Tracker
from core.workers.group import WorkerGroup
from core.workers.launch import make_worker_group

log = logging.getLogger("tandem")
SFT_WORKER = "sft.worker:SFTWorker"


def init_distributed(cfg: DictConfig) -> bool:
    """Join the process group a launcher (torchrun) describes in the environment; True if this call made it."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1 or dist.is_initialized():
        return False
    backend = load_backend(cfg.backend.name)
    device = resolve_device(cfg.trainer.device, backend, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type != "cpu":
        backend.set_device(device.index or 0)
    dist.init_process_group(process_group_backend(backend, device), timeout=timedelta(seconds=cfg.trainer.dist_timeout_s))
    return True


def same_on_all_ranks(value):
    """Rank 0's `value` on every rank."""
    if world()[1] == 1:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def train(cfg: DictConfig) -> dict[str, float]:
    """Run `trainer.total_steps` SFT steps; returns a summary (validation reward/loss first and last)."""
    owns_group = init_distributed(cfg)
    try:
        summary = _train(cfg)
        if world()[0] == 0 and cfg.trainer.report and "jsonl" in cfg.trainer.loggers:
            summary["report"] = write_report(cfg.trainer.output_dir)
            summary.setdefault("locations", []).extend(
                f"report: {page}" for page in report_pages(cfg.trainer.output_dir))
        return summary
    finally:
        if owns_group:
            dist.destroy_process_group()


def _train(cfg: DictConfig) -> dict[str, float]:
    rank, world_size = world()  # torchrun's ranks; the Ray launcher's controller is one process
    launcher = cfg.trainer.launcher
    if launcher == "ray" and world_size > 1:
        raise TandemError("trainer.launcher=ray starts its own workers: run `python -m sft.main`, not torchrun")
    ranks = cfg.trainer.nnodes * cfg.trainer.n_gpus_per_node if launcher == "ray" else world_size
    if cfg.trainer.batch_size < ranks:
        raise TandemError(f"trainer.batch_size={cfg.trainer.batch_size} is smaller than the {ranks} ranks")
    run_dir = Path(same_on_all_ranks(cfg.trainer.output_dir))  # ${now:...} may differ by a second between ranks
    cfg.trainer.output_dir = str(run_dir)  # and between this process and the workers
    workers = make_worker_group(cfg, SFT_WORKER)
    tracker = None
    stack = ExitStack()
    try:
        sampler = EpochSampler(workers.run_all("train_size")[0], seed=cfg.data.seed)
        checkpoints = run_dir / "checkpoints"
        first_step = resume(cfg.trainer.resume, checkpoints, workers, sampler)
        if rank == 0:
            stack.enter_context(claim_run_dir(run_dir, cfg.trainer.resume, OmegaConf.to_container(cfg, resolve=True),
                                              cfg.trainer.resume_force))
            tracker = Tracker(list(cfg.trainer.loggers), run_dir, OmegaConf.to_container(cfg, resolve=True),
                              console_every=cfg.trainer.log_every)
            log.info("run directory: %s", run_dir.resolve())
            if cfg.trainer.resume != "never":  # the steps after the checkpoint (all, without one) are logged again
                tracker.rewind(first_step - 1 if first_step > 1 else -1)
        history: list[dict[str, float]] = []
        guard = NonFiniteGuard("stop", skippable=False)  # SFT stops at the first NaN/inf loss or gradient norm

        def validate(step: int) -> None:
            started = time.perf_counter()
            metrics = workers.run_all("validate", step)[0]
            metrics["timing/val"] = time.perf_counter() - started  # weight push, generation, scoring, loss
            history.append({"step": step, **metrics})
            if tracker is not None:
                tracker.log(metrics, step)

        total, val_freq = cfg.trainer.total_steps, cfg.validation.val_freq
        start = time.perf_counter()
        if cfg.validation.validate_before_training and first_step == 1:
            validate(0)
        preemption = stack.enter_context(Preemption())
        preemption.begin_steps()
        for step in tqdm(range(first_step, total + 1), desc="sft", unit="step", disable=rank != 0 or None):
            step_start = time.perf_counter()
            metrics = workers.run_all("train_step", sampler.next_indices(cfg.trainer.batch_size))[0]
            metrics["timing/step"] = time.perf_counter() - step_start
            metrics["perf/tokens_per_s"] = metrics["train/input_tokens"] / max(metrics["timing/step"], 1e-9)
            died = guard.check({("update", "loss"): metrics.get("train/loss"),
                                ("update", "gradient norm"): metrics.get("train/grad_norm")})
            if tracker is not None:
                tracker.log(metrics, step)  # logged before a stop, so the file shows the values that died
            if died:
                raise RunDied(f"step {step}: {died}")
            if step == total or (val_freq > 0 and step % val_freq == 0):
                validate(step)
            saved, stopping = None, preemption.agreed()  # torchrun: every rank stops after the same step
            if cfg.trainer.save_freq > 0 and (step % cfg.trainer.save_freq == 0 or step == total or stopping):
                saved = workers.save_checkpoint(str(checkpoints), step, {"sampler": sampler.state_dict()})
                if rank == 0:
                    log.info("saved step %d -> %s", step, saved)
            if stopping:  # SIGTERM / Ctrl-C: this step is done and saved; stop here
                raise preemption.stop(step, saved)
        summary = _summary(history, total, time.perf_counter() - start)
        if tracker is not None:
            summary["locations"] = tracker.locations()
        if cfg.trainer.save_model:
            workers.save_model(str(run_dir / "final"))
            summary["final_model"] = str(run_dir / "final")
        return summary
    finally:
        stack.close()
        if tracker is not None:
            tracker.close()
        workers.close()


def resume(setting: str, checkpoints: Path, workers: WorkerGroup, sampler: EpochSampler) -> int:
    """Restore the latest (or the named) checkpoint; returns the first step still to run."""
    path = resolve_resume(setting, checkpoints)
    if path is None:
        return 1
    state = workers.load_checkpoint(str(path))
    sampler.load_state_dict(state["trainer"]["sampler"])
    log.info("resumed from %s (step %d)", path, state["step"])
    return state["step"] + 1


def _summary(history: list[dict[str, float]], steps: int, wall_s: float) -> dict[str, float]:
    summary: dict[str, float] = {"steps": steps, "wall_s": wall_s, "validations": len(history)}
    for key in ("val/loss", "val/reward", "val/exact_match"):
        if history and key in history[0]:
            summary[f"{key}_start"], summary[f"{key}_end"] = history[0][key], history[-1][key]
    return summary
