"""The Ray launcher: one actor per GPU (per CPU process on the cpu backend), in placement groups per node.

Each actor holds one worker (RL's TrainWorker: policy, reference, critic, rollout engine, the colocated
hybrid engine; or another loop's worker class, e.g. SFT's) and joins one torch.distributed group (the backend's, e.g. NCCL; gloo on CPU) with the others.
Multi-node is configuration only: `trainer.nnodes`, `trainer.n_gpus_per_node`, and
`trainer.ray_address=auto` to join a running cluster. If any worker raises or dies, the whole
group is killed (no rank is left waiting in a collective) and `WorkerFailure` carries the
worker's traceback. A Ray this group started (no `trainer.ray_address` cluster to join) is shut down
when the group closes, on every exit path. If the controller is SIGKILLed, Ray's own fate-sharing ends
its daemons (Ray 2.60: at once, except the raylet's two agents, which exit about 65 s later).
A worker signalled with SIGTERM/SIGINT finishes its step and asks the controller to stop
(core/run/preemption.py).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from datetime import timedelta
from typing import Any, Sequence

from omegaconf import OmegaConf

from core.backends.base import Backend
from core.errors import TandemError
from core.plugins.manager import load_backend
from core.run.preemption import FROM_WORKER, SIGNALS, hold_in_worker, release_worker
from core.tracking.verbosity import library_env, quiet_libraries, ray_log_level
from core.trainer.setup import load_tokenizer, process_group_backend, resolve_device
from core.workers.base import import_worker
from core.workers.group import TRAIN_WORKER, WorkerGroup
from core.workers.ray_reaper import watch_driver

PLACEMENT_TIMEOUT_S = 120
RELEASE_TIMEOUT_S = 10


class WorkerFailure(RuntimeError):
    """A worker raised or died; the message names its rank and holds its traceback."""


class _WorkerActor:
    """The body of each Ray actor: joins the process group, then builds and serves its worker."""

    def __init__(self, cfg: dict, rank: int, world_size: int, worker: str, worker_args: tuple,
                 controller: tuple[int, str]):
        hold_in_worker(*controller)
        quiet_libraries()
        self.cfg = OmegaConf.create(cfg)
        self.rank, self.world_size = rank, world_size
        self.worker_path, self.worker_args = worker, worker_args
        self.worker = None

    def address(self) -> tuple[str, int]:
        import ray

        with socket.socket() as sock:
            sock.bind(("", 0))
            return ray.util.get_node_ip_address(), sock.getsockname()[1]

    def setup(self, master_addr: str, master_port: int) -> None:
        import torch.distributed as dist

        backend = load_backend(self.cfg.backend.name)
        device = resolve_device(self.cfg.trainer.device, backend)
        if device.type != "cpu":
            backend.set_device(0)  # Ray exposes exactly this actor's device
        dist.init_process_group(
            process_group_backend(backend, device), init_method=f"tcp://{master_addr}:{master_port}",
            rank=self.rank, world_size=self.world_size, timeout=timedelta(minutes=10),
        )
        self.worker = import_worker(self.worker_path)(self.cfg, *self.worker_args)

    def call(self, method: str, *args) -> Any:
        return getattr(self.worker, method)(*args)

    def release(self) -> None:
        release_worker()


class RayWorkerGroup(WorkerGroup):
    """`trainer.nnodes` x `trainer.n_gpus_per_node` actors, each building `worker` ("package.module:Class")
    as `Class(cfg, *worker_args)` after joining the process group."""

    def __init__(self, cfg, worker: str = TRAIN_WORKER, *worker_args):
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        trainer = cfg.trainer
        self.world_size = trainer.nnodes * trainer.n_gpus_per_node
        self.pad_token_id = load_tokenizer(cfg.model)[1].pad_token_id
        backend = load_backend(cfg.backend.name)
        env = _worker_env(backend)
        if _main_thread() and signal.getsignal(FROM_WORKER) == signal.SIG_DFL:
            signal.signal(FROM_WORKER, signal.SIG_IGN)  # no loop to stop here (a script, a test): not fatal
        self.owns_ray = not ray.is_initialized()
        if self.owns_ray:
            handlers = {sig: signal.getsignal(sig) for sig in SIGNALS}
            ray.init(address=trainer.ray_address, include_dashboard=False, logging_level=ray_log_level(),
                     runtime_env={"env_vars": {k: v for k, v in env.items() if v is not None}})
            self._reaper = watch_driver()  # a SIGKILLed run takes its Ray processes with it
            if _main_thread():
                for sig, handler in handlers.items():  # ray.init sets its own SIGTERM exit; the run's stays in charge
                    signal.signal(sig, handler)
        resource = backend.ray_resource if resolve_device(trainer.device, backend).type != "cpu" else None
        bundle = {"CPU": 1, resource: 1} if resource else {"CPU": 1}
        self.placement_groups = [
            placement_group([bundle] * trainer.n_gpus_per_node, strategy="STRICT_PACK") for _ in range(trainer.nnodes)
        ]
        ready, _ = ray.wait([pg.ready() for pg in self.placement_groups], num_returns=trainer.nnodes,
                            timeout=PLACEMENT_TIMEOUT_S)
        if len(ready) < trainer.nnodes:
            self.shutdown()
            raise TandemError(
                f"Ray cannot place {trainer.nnodes} node(s) x {trainer.n_gpus_per_node} workers of {bundle} "
                f"(cluster resources: {ray.cluster_resources()}); lower trainer.n_gpus_per_node or trainer.nnodes"
            )
        actor_class = ray.remote(num_cpus=1, **_reservation(resource))(_WorkerActor)
        container = OmegaConf.to_container(cfg, resolve=True)
        self.actors = [
            actor_class.options(
                scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=local),
            ).remote(container, node * trainer.n_gpus_per_node + local, self.world_size, worker, worker_args,
                     (os.getpid(), socket.gethostname()))
            for node, pg in enumerate(self.placement_groups)
            for local in range(trainer.n_gpus_per_node)
        ]
        master_addr, master_port = self._gather([self.actors[0].address.remote()])[0]
        self._gather([actor.setup.remote(master_addr, master_port) for actor in self.actors])

    def _run(self, method: str, per_rank_args: Sequence[tuple]) -> list[Any]:
        return self._gather([actor.call.remote(method, *args) for actor, args in zip(self.actors, per_rank_args)])

    def _gather(self, refs: list) -> list[Any]:
        """Results in rank order; on the first failure, kill every worker and raise its traceback."""
        import ray

        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                ray.get(done[0])
            except ray.exceptions.RayError as exc:
                rank = refs.index(done[0])
                self.shutdown()
                if isinstance(getattr(exc, "cause", None), TandemError):  # the user's mistake: one clear line
                    raise TandemError(f"worker rank {rank}: {exc.cause}") from None
                raise WorkerFailure(f"worker rank {rank} of {self.world_size} failed:\n{exc}") from None
        return ray.get(refs)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        import ray

        try:  # Ray ends its workers with SIGTERM, which they would forward as a stop request
            ray.get([actor.release.remote() for actor in getattr(self, "actors", [])], timeout=RELEASE_TIMEOUT_S)
        except Exception:  # a dead or hung worker is killed below all the same
            pass
        for actor in getattr(self, "actors", []):
            ray.kill(actor)
        self.actors = []
        self._remove_placement_groups()
        if self.owns_ray:
            ray.shutdown()
            reaper = getattr(self, "_reaper", None)
            if reaper is not None:
                reaper.kill()
                reaper.wait()

    def _remove_placement_groups(self) -> None:
        from ray.util.placement_group import remove_placement_group

        for pg in self.placement_groups:
            remove_placement_group(pg)
        self.placement_groups = []


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()  # only it may set signal handlers


def _reservation(resource: str | None) -> dict[str, Any]:
    """ray.remote's keywords reserving one `resource` (Ray takes GPUs by keyword, others by name)."""
    if resource is None:
        return {}
    return {"num_gpus": 1} if resource == "GPU" else {"resources": {resource: 1}}


def _worker_env(backend: Backend) -> dict[str, str | None]:
    """The backend's worker environment, also applied here so workers inherit it."""
    env: dict[str, str | None] = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env.update({key: os.environ.get(key, value) for key, value in library_env().items()})  # the user's wins
    env.update(backend.worker_env())
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    return env
