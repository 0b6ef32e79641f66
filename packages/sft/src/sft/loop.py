"""The SFT loop, top to bottom: start the workers (sft/worker.py: data, model, validation engine on
every rank), then train steps with validation by generation every `validation.val_freq` steps and
at the end, checkpoints every `trainer.save_freq`, then export the final model as an HF directory.

The loop is the controller: it holds the data order (sampler), the tracker and the summary, and
drives the workers through a core worker group, so the same code runs one in-process worker, one
per torchrun rank (each rank's loop drives its own), or one Ray actor per GPU (`trainer.launcher=ray`).
"""

from __future__ import annotations

import os
import time
from datetime import timedelta

import torch.distributed as dist
from omegaconf import DictConfig
from tqdm.auto import tqdm

from core.data.rl_dataset import EpochSampler
from core.distributed.collectives import world
from core.errors import RunDied, TandemError
from core.plugins.manager import load_backend
from core.run.session import RunSession
from core.trainer.setup import process_group_backend, resolve_device
from core.run.health import NonFiniteGuard
from core.workers.launch import make_worker_group

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
        return _train(cfg)
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
    # ${now:...} may differ by a second between ranks, and between this process and the workers
    cfg.trainer.output_dir = str(same_on_all_ranks(cfg.trainer.output_dir))
    session = RunSession(cfg, main_rank=rank == 0, save_last_step=True)
    with session:  # run dir (rank 0), tracker, SIGTERM, checkpoints; closed in reverse, on success and error
        workers = make_worker_group(cfg, SFT_WORKER)
        session.callback(workers.close)
        sampler = EpochSampler(workers.run_all("train_size")[0], seed=cfg.data.seed)
        first_step, loop_state = session.resume(workers)
        if loop_state:
            sampler.load_state_dict(loop_state["sampler"])
        history: list[dict[str, float]] = []
        guard = NonFiniteGuard("stop", skippable=False)  # SFT stops at the first NaN/inf loss or gradient norm

        def validate(step: int) -> None:
            started = time.perf_counter()
            metrics = workers.run_all("validate", step)[0]
            metrics["timing/val"] = time.perf_counter() - started  # weight push, generation, scoring, loss
            history.append({"step": step, **metrics})
            session.log(metrics, step)

        total, val_freq = cfg.trainer.total_steps, cfg.validation.val_freq
        start = time.perf_counter()
        if cfg.validation.validate_before_training and first_step == 1:
            validate(0)
        session.preemption.begin_steps()
        for step in tqdm(range(first_step, total + 1), desc="sft", unit="step", disable=rank != 0 or None):
            step_start = time.perf_counter()
            metrics = workers.run_all("train_step", sampler.next_indices(cfg.trainer.batch_size))[0]
            metrics["timing/step"] = time.perf_counter() - step_start
            metrics["perf/tokens_per_s"] = metrics["train/input_tokens"] / max(metrics["timing/step"], 1e-9)
            died = guard.check({("update", "loss"): metrics.get("train/loss"),
                                ("update", "gradient norm"): metrics.get("train/grad_norm")})
            session.log(metrics, step)  # logged before a stop, so the file shows the values that died
            if died:
                raise RunDied(f"step {step}: {died}")
            if step == total or (val_freq > 0 and step % val_freq == 0):
                validate(step)
            # torchrun: every rank stops after the same step (the session's preemption agrees on it)
            session.checkpoint_if_due(step, workers, lambda: {"sampler": sampler.state_dict()}, last_step=step == total)
        summary = session.finish(workers, _summary(history, total, time.perf_counter() - start))
    return session.write_report(summary)


def _summary(history: list[dict[str, float]], steps: int, wall_s: float) -> dict[str, float]:
    summary: dict[str, float] = {"steps": steps, "wall_s": wall_s, "validations": len(history)}
    for key in ("val/loss", "val/reward", "val/exact_match"):
        if history and key in history[0]:
            summary[f"{key}_start"], summary[f"{key}_end"] = history[0][key], history[-1][key]
    return summary
