"""One run per directory, and a directory is never mixed: a lock names its owner, an existing run is
not overwritten by accident, and a resume under another model, data or algorithm is refused.

    with claim_run_dir(run_dir, cfg.trainer.resume, config_dict):
        ...
"""

from __future__ import annotations

import json
import logging
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from core.errors import TandemError

log = logging.getLogger("tandem")
LOCK = ".tandem.lock"
RUN_FILES = ("metrics.jsonl", "checkpoints")  # what makes a directory hold a run
CONFIG_FILE = "config.json"  # the run's resolved config, written when it starts
SAME_ON_RESUME = ("model", "data", "algorithm")  # sections a resumed run must share with the original


@contextmanager
def claim_run_dir(run_dir: Path, resume: str, config: dict | None = None, force: bool = False) -> Iterator[None]:
    """Hold `run_dir`'s lock for the block; refuse a directory that already holds a run unless resuming,
    and a resume whose model, data or algorithm differ from the run's (unless `force`)."""
    if resume == "never" and any((run_dir / name).exists() for name in RUN_FILES):
        raise TandemError(
            f"trainer.output_dir {run_dir} already holds a run; continue it with trainer.resume=auto "
            "or choose a new directory"
        )
    lock = run_dir / LOCK
    _take(lock)
    try:
        if config is not None:
            _check_and_record(run_dir / CONFIG_FILE, config, force)
        yield
    finally:
        lock.unlink(missing_ok=True)


def _check_and_record(path: Path, config: dict, force: bool) -> None:
    if path.is_file() and not force:
        before = json.loads(path.read_text())
        changed = [key for key in sorted(set(_flat(before)) | set(_flat(config)))
                   if key.split(".")[0] in SAME_ON_RESUME and _flat(before).get(key) != _flat(config).get(key)]
        if changed:
            shown = ", ".join(f"{k}: {_flat(before).get(k)!r} -> {_flat(config).get(k)!r}" for k in changed[:4])
            raise TandemError(
                f"resuming {path.parent} under another config ({shown}{', ...' if len(changed) > 4 else ''}); "
                "use the run's own settings, a new trainer.output_dir, or trainer.resume_force=true"
            )
    staging = path.with_suffix(".json.tmp")
    staging.write_text(json.dumps(config, indent=1, default=str))
    staging.replace(path)


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, dict):
        return {prefix[:-1]: node}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        flat.update(_flat(value, f"{prefix}{key}."))
    return flat


def _writable_directory(run_dir: Path) -> None:
    """Create `run_dir`, or say in one line why it cannot hold a run (a file there, no permission, a full disk)."""
    for parent in (run_dir, *run_dir.parents):
        if parent.exists() and not parent.is_dir():
            raise TandemError(f"trainer.output_dir {run_dir}: {parent} is a file, not a directory; choose another path")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TandemError(f"trainer.output_dir {run_dir} cannot be created: {exc.strerror}") from None
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise TandemError(f"trainer.output_dir {run_dir} is not writable by this user; choose another directory")


def _take(lock: Path) -> None:
    _writable_directory(lock.parent)
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
