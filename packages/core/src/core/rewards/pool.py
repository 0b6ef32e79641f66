"""Running reward calls in parallel with a per-call deadline, so a checker that hangs cannot hang the run.

At most `workers` calls are in flight, so each one starts when it is submitted and its deadline is
`timeout_s` after that. A call past its deadline is abandoned: its sample scores as timed out. A
hung thread cannot be stopped, so threads here are daemons (a `ThreadPoolExecutor` would block
interpreter exit joining it) and a fresh thread takes its place; a hung process is terminated with
its pool, and the calls it shared the pool with are sent again.
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import queue
import threading
import time
from collections import deque
from typing import Any, Callable, Sequence

TIMED_OUT = "timed out"


class DaemonThreadPool:
    """The smallest thread pool with daemon workers: `submit(fn, arg)` -> Future."""

    def __init__(self, workers: int):
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._workers = 0
        for _ in range(workers):
            self.add_worker()

    def add_worker(self) -> None:
        self._workers += 1
        threading.Thread(target=self._work, daemon=True, name="tandem-reward").start()

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            future, fn, arg = task
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(arg))
                except BaseException as exc:  # handed to the caller through the future
                    future.set_exception(exc)

    def submit(self, fn: Callable, arg: Any) -> cf.Future:
        future: cf.Future = cf.Future()
        self._tasks.put((future, fn, arg))
        return future

    def shutdown(self) -> None:
        for _ in range(self._workers):
            self._tasks.put(None)  # a hung worker never reads its None; it dies with the process


class DeadlinePool:
    """`run(fn, args)` -> [fn(arg) or TIMED_OUT] in order, over threads or processes."""

    def __init__(self, workers: int, executor: str, timeout_s: float | None):
        self.workers = max(1, workers)
        self.executor = executor
        self.timeout_s = timeout_s if timeout_s and timeout_s > 0 else math.inf
        self._pool = self._new_pool()

    def _new_pool(self):
        if self.executor == "process":
            return cf.ProcessPoolExecutor(max_workers=self.workers)
        return DaemonThreadPool(self.workers)

    def run(self, fn: Callable, args: Sequence[Any]) -> list[Any]:
        results: list[Any] = [None] * len(args)
        pending = deque(range(len(args)))
        running: dict[cf.Future, tuple[int, float]] = {}  # future -> (index, deadline)
        while pending or running:
            while pending and len(running) < self.workers:
                index = pending.popleft()
                running[self._pool.submit(fn, args[index])] = (index, time.monotonic() + self.timeout_s)
            wait_s = min(deadline for _, deadline in running.values()) - time.monotonic()
            done, _ = cf.wait(running, timeout=None if math.isinf(wait_s) else max(wait_s, 0.0),
                              return_when=cf.FIRST_COMPLETED)
            for future in done:
                results[running.pop(future)[0]] = future.result()
            now = time.monotonic()
            late = [f for f, (_, deadline) in running.items() if deadline <= now and not f.done()]
            for future in late:
                results[running.pop(future)[0]] = TIMED_OUT
            if late:
                self._replace_hung_workers(len(late), running, pending)
        return results

    def _replace_hung_workers(self, hung: int, running: dict, pending: deque) -> None:
        if self.executor != "process":
            for _ in range(hung):
                self._pool.add_worker()  # the hung threads keep running, abandoned
            return
        for process in list(getattr(self._pool, "_processes", {}).values()):
            process.terminate()  # ProcessPoolExecutor cannot cancel a running call any other way
        self._pool.shutdown(wait=False, cancel_futures=True)
        pending.extendleft(index for index, _ in sorted(running.values(), reverse=True))  # killed with the pool
        running.clear()
        self._pool = self._new_pool()

    def close(self) -> None:
        if self.executor == "process":
            self._pool.shutdown(cancel_futures=True)
        else:
            self._pool.shutdown()
