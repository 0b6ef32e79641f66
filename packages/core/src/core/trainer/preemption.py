"""SIGTERM (what Slurm and Kubernetes send before a kill) and Ctrl-C: finish the step under way,
write a checkpoint when checkpoints are on, say where, and exit with 128 + the signal's number
(143, 130), with no traceback. A second signal exits at once.

    with Preemption() as preemption:
        for step in steps:
            ...
            if preemption.requested:
                raise preemption.stop(step, checkpoint)
"""

from __future__ import annotations

import logging
import os
import signal
import threading

from core.errors import TandemError

log = logging.getLogger("tandem")
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(TandemError):
    """The run stopped at a signal, cleanly; exit code 128 + signal number."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


class Preemption:
    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def __enter__(self) -> "Preemption":
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:  # the second one: the user means now
            os._exit(128 + signum)
        self.signum = signum
        log.warning("%s: finishing this step, then a checkpoint and exit (send it again to exit now)",
                    signal.Signals(signum).name)

    def stop(self, step: int, checkpoint: str | None) -> Preempted:
        name = signal.Signals(self.signum).name
        where = (f"checkpoint {checkpoint}; continue with trainer.resume=auto" if checkpoint
                 else "no checkpoint (trainer.save_freq=0)")
        return Preempted(f"stopped by {name} after step {step}: {where}", self.signum)
