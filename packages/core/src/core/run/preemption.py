"""SIGTERM (what Slurm and Kubernetes send before a kill) and Ctrl-C: finish the step under way,
write a checkpoint when checkpoints are on, say where, and exit with 128 + the signal's number
(143, 130), with no traceback. A second signal exits at once.

    with Preemption() as preemption:
        for step in steps:
            ...
            if preemption.agreed():
                raise preemption.stop(step, checkpoint)

Under Ray, each worker process holds the signal too (`hold_in_worker`): a worker told to stop forwards
SIGUSR1 to the controller on its host, which then stops after the step as if signalled itself (a
signal sent to the whole job, as Slurm does, thus still counts once). Under torchrun every rank gets the
signal at its own moment; `agreed()` makes all ranks stop after the same step.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

import torch
import torch.distributed as dist

from core.distributed.collectives import is_distributed
from core.distributed.devices import collective_device
from core.errors import TandemError

log = logging.getLogger("tandem")
SIGNALS = (signal.SIGTERM, signal.SIGINT)
FROM_WORKER = signal.SIGUSR1  # a worker was signalled: stop as at SIGTERM, never counted as the second signal


class Preempted(TandemError):
    """The run stopped at a signal, cleanly; exit code 128 + signal number."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


class Preemption:
    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}
        # before the first step (model import, engine start, the step-0 evaluation: minutes on a real model)
        # there is no step to finish and nothing to save: a signal stops the run at once
        self.stepping = False

    def begin_steps(self) -> None:
        """From here a signal lets the step under way finish (call before the first training step)."""
        self.stepping = True

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def __enter__(self) -> "Preemption":
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous = {sig: signal.signal(sig, self._handle) for sig in (*SIGNALS, FROM_WORKER)}
        return self

    def __exit__(self, *exc) -> None:
        if self.signum is not None:  # stopping: until the process is gone, another signal still means "now"
            for sig in SIGNALS:
                signal.signal(sig, lambda signum, frame: os._exit(128 + signum))
        else:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum: int, frame) -> None:
        if signum == FROM_WORKER:
            if self.signum is None:
                self.signum = signal.SIGTERM
                if not self.stepping:
                    raise Preempted("a worker was signalled before the first step: nothing to save", signal.SIGTERM)
                log.warning("a worker was signalled: finishing this step, then a checkpoint and exit")
            return
        if self.signum is not None:  # the second one: the user means now
            os._exit(128 + signum)
        self.signum = signum
        if not self.stepping:  # raised in the main thread, wherever it is: the clean-up still runs
            raise Preempted(f"stopped by {signal.Signals(signum).name} before the first step: nothing to save", signum)
        log.warning("%s: finishing this step, then a checkpoint and exit (send it again to exit now)",
                    signal.Signals(signum).name)

    def agreed(self) -> bool:
        """Whether any rank was signalled: every torchrun rank gets the same answer after the same step
        (one rank stopping alone would leave the others waiting in a collective)."""
        if not is_distributed():
            return self.requested
        signum = torch.tensor([self.signum or 0], device=collective_device())
        dist.all_reduce(signum, op=dist.ReduceOp.MAX)
        if self.signum is None and signum.item():
            self.signum = int(signum.item())
        return self.requested

    def stop(self, step: int, checkpoint: str | None) -> Preempted:
        name = signal.Signals(self.signum).name
        where = (f"checkpoint {checkpoint}; continue with trainer.resume=auto" if checkpoint
                 else "no checkpoint (trainer.save_freq=0)")
        return Preempted(f"stopped by {name} after step {step}: {where}", self.signum)


def hold_in_worker(controller_pid: int, controller_host: str) -> None:
    """In a Ray worker: the first SIGTERM/SIGINT does not kill the worker mid-step; it asks the controller
    (when it runs on this host) to stop after the step. A second signal exits at once."""
    import socket

    if threading.current_thread() is not threading.main_thread():
        return
    told = []

    def handle(signum: int, frame) -> None:
        if told:
            os._exit(128 + signum)
        told.append(signum)
        if socket.gethostname() == controller_host:
            os.kill(controller_pid, FROM_WORKER)

    for sig in SIGNALS:
        signal.signal(sig, handle)


def release_worker() -> None:
    """In a Ray worker whose group is shutting down: signals kill it again (Ray ends its workers with
    SIGTERM, which must not reach the controller as a stop request, least of all after the run)."""
    if threading.current_thread() is threading.main_thread():
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
