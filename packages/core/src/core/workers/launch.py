"""Which worker group a run gets: `trainer.launcher` decides (inprocess, or ray)."""

from __future__ import annotations

from core.errors import TandemError
from core.workers.group import TRAIN_WORKER, InProcessWorkerGroup, WorkerGroup


def make_worker_group(cfg, worker: str = TRAIN_WORKER, *worker_args) -> WorkerGroup:
    """The group `trainer.launcher` names, of `worker` ("package.module:Class") built as `Class(cfg, *worker_args)`."""
    launcher = cfg.trainer.launcher
    if launcher == "inprocess":
        if cfg.trainer.nnodes * cfg.trainer.n_gpus_per_node != 1:
            raise TandemError("trainer.launcher=inprocess runs one worker; use trainer.launcher=ray for more")
        return InProcessWorkerGroup(cfg, worker, *worker_args)
    if launcher == "ray":
        from core.workers.ray_group import RayWorkerGroup

        return RayWorkerGroup(cfg, worker, *worker_args)
    raise TandemError(f"trainer.launcher={launcher!r} is unknown; choose inprocess or ray")
