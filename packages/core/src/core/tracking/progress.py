"""Progress inside one generation call, under the step bar: vLLM's requests done (with its tokens/s)
and the HF engine's decode steps. A bar is cleared when its call returns and, like the step bar, is off
where there is no terminal (a log file gets the metrics table, not bars)."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


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
