"""One run per directory, and a directory is never mixed: a lock names its owner, an existing run is
not overwritten by accident, and a run resumed before its first checkpoint starts its log over.

    with claim_run_dir(run_dir, resume_setting) as fresh_start:
        ...   # fresh_start: no checkpoint will be loaded (the loop begins at step 1)
"""

from __future__ import annotations

import logging
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from core.errors import TandemError

log = logging.getLogger("tandem")
LOCK = ".tandem.lock"
RUN_FILES = ("metrics.jsonl", "checkpoints")  # what makes a directory hold a run


@contextmanager
def claim_run_dir(run_dir: Path, resume: str) -> Iterator[None]:
    """Hold `run_dir`'s lock for the block; refuse a directory that already holds a run unless resuming."""
    if resume == "never" and any((run_dir / name).exists() for name in RUN_FILES):
        raise TandemError(
            f"trainer.output_dir {run_dir} already holds a run; continue it with trainer.resume=auto "
            "or choose a new directory"
        )
    lock = run_dir / LOCK
    _take(lock)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _take(lock: Path) -> None:
    lock.parent.mkdir(parents=True, exist_ok=True)
    me = f"{socket.gethostname()} {os.getpid()}"
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        owner = lock.read_text().strip()
        if not _stale(owner):
            raise TandemError(f"{lock.parent} is in use by another run (host and pid: {owner}); "
                              f"choose another trainer.output_dir") from None
        log.warning("%s: taking over the lock of a run that is gone (%s)", lock.parent, owner)
        lock.write_text(me)
        return
    with os.fdopen(fd, "w") as handle:
        handle.write(me)


def _stale(owner: str) -> bool:
    """A lock is stale when its pid no longer runs on this host (another host's lock is trusted)."""
    host, _, pid = owner.rpartition(" ")
    if host != socket.gethostname() or not pid.isdigit():
        return not pid.isdigit()
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False
