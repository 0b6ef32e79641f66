"""Ray's processes end with the run that started them, even when that run is SIGKILLed.

`ray.init` in a driver starts a local cluster (GCS, raylet, and under the raylet the dashboard and
runtime-env agents and the workers). A driver that exits cleanly shuts it down; one that is SIGKILLed
(the OOM killer, a scheduler's hard stop) cannot, and the agents were seen alive long after. `watch_driver`
starts a small process in its own session that waits for the driver to die, then SIGKILLs the processes
the driver had started and everything under them. It identifies each by pid *and* start time, so a
reused pid is never touched; when Ray shuts down normally the driver ends the watcher itself.

    python -m core.workers.ray_reaper DRIVER_PID   # started by watch_driver; not for users
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

POLL_S = 0.5


def watch_driver() -> subprocess.Popen:
    """Start the watcher for this process's current children (call right after `ray.init`)."""
    return subprocess.Popen([sys.executable, "-m", "core.workers.ray_reaper", str(os.getpid())],
                            start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[19])


def children_by_parent() -> dict[int, list[int]]:
    """pid -> its children's pids, for every process visible now."""
    tree: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        tree.setdefault(parent, []).append(int(name))
    return tree


def descendants(roots: list[int], tree: dict[int, list[int]]) -> list[int]:
    """`roots` and every process below them in `tree`."""
    found, stack = [], list(roots)
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(tree.get(pid, []))
    return found


def main(driver: int) -> None:
    """Keep a list of everything under the driver (but this watcher), refreshed while it lives: Ray's own
    processes may die and orphan theirs in the moment the driver does. Then kill what is left of it."""
    me = os.getpid()
    driver_started = start_time(driver)
    known: dict[int, int | None] = {}
    while start_time(driver) == driver_started:
        tree = children_by_parent()
        under = descendants([pid for pid in tree.get(driver, []) if pid != me], tree)
        known.update((pid, start_time(pid)) for pid in under if pid not in known)
        if known and not under:
            return  # Ray was shut down and the driver lives on
        time.sleep(POLL_S)
    for pid, started in known.items():
        if started is not None and start_time(pid) == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


if __name__ == "__main__":
    main(int(sys.argv[1]))
