"""Progress inside one generation call, under the step bar: vLLM's requests done (with its tokens/s)
and the HF engine's decode steps. A bar is cleared when its call returns and, like the step bar, is off
where there is no terminal (a log file gets the metrics table, not bars)."""

from __future__ import annotations

import logging
import sys
import threading
import time

from tqdm.auto import tqdm

log = logging.getLogger("tandem")


def vllm_bar(*args, **kwargs) -> tqdm:
    """vLLM's own bar and figures, cleared when the call returns."""
    return tqdm(*args, **{**kwargs, "leave": False})


def vllm_progress():
    """`LLM.generate(use_tqdm=...)`: the bar in a terminal, False elsewhere (vLLM divides by a disabled
    bar's elapsed time, 0, so it must not get one)."""
    return vllm_bar if sys.stderr.isatty() else False


class DecodeSteps:
    """A transformers streamer for a batched `generate`: one tick per decode step (max_new_tokens at most)."""

    def __init__(self, max_new_tokens: int, desc: str = "generating"):
        self.steps = 0
        self._prompt_seen = False
        self._bar = tqdm(total=max_new_tokens, desc=desc, unit="tok", leave=False, disable=None)

    def put(self, value) -> None:
        if not self._prompt_seen:  # generate() hands the prompt over first
            self._prompt_seen = True
            return
        self.steps += 1
        self._bar.update(1)

    def end(self) -> None:
        self._bar.close()


class Heartbeat:
    """The step bar, and where there is no terminal to draw it (a log file, CI), a line whenever one phase
    has run for another `every_s` seconds: "step 3/60: gen for 120 s". Without it a piped run is silent
    between metrics tables, minutes at a time on a CPU.

    Used as the bar is: iterated for the steps, `set_postfix_str(phase)` as each phase starts, `close()`."""

    def __init__(self, bar, every_s: float = 60.0, enabled: bool | None = None):
        self.bar, self.every_s = bar, every_s
        self._note, self._since, self._last, self._step = None, 0.0, 0.0, None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        if (not sys.stderr.isatty()) if enabled is None else enabled:
            threading.Thread(target=self._beat, daemon=True, name="tandem-heartbeat").start()

    def __iter__(self):
        for step in self.bar:
            self._step = step
            yield step

    def set_postfix_str(self, note: str) -> None:
        self.bar.set_postfix_str(note)
        with self._lock:
            self._note, self._since = note, time.monotonic()
            self._last = self._since

    def close(self) -> None:
        self._stop.set()
        self.bar.close()

    def _beat(self) -> None:
        while not self._stop.wait(min(1.0, self.every_s / 4)):
            with self._lock:
                now = time.monotonic()
                if self._note is None or now - self._last < self.every_s:
                    continue
                self._last = now
                where = "before training" if self._step is None else f"step {self._step}/{self.bar.total or '?'}"
                log.info("%s: %s for %.0f s", where, self._note, now - self._since)
