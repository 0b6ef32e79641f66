"""The "rebuild" sleep-mode fallback: a vLLM engine started for each rollout and shut down after.

Without sleep mode a resident engine keeps its weights and KV cache on the GPU while the trainer
works. Closing the engine after every rollout and starting a fresh one at the next gives all of
that memory back, at the price of an engine start (seconds to a minute) per rollout. The sharding
manager drives it unchanged: `sleep()` closes, `wake_up()` rebuilds, then it pushes the weights.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch

from core.rollout.base import RolloutOutput, SamplingParams


class RebuildPerRolloutEngine:
    """A `RolloutEngine` over engines made by `build()`, one per rollout."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self.engine: Any = build()
        self.dtype: torch.dtype = self.engine.dtype
        self.builds = 1  # engines started so far

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> RolloutOutput:
        return self._live().generate(prompts, params)

    def prompt_logprobs(self, sequences: list[list[int]]) -> list[list[float]]:
        return self._live().prompt_logprobs(sequences)

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        self._live().update_weights(named_tensors)

    def sleep(self) -> None:
        self.close()

    def wake_up(self, tags: list[str] | None = None) -> None:
        self._live()  # a fresh engine has every part awake

    def close(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.close()

    def _live(self) -> Any:
        if self.engine is None:
            self.engine = self._build()
            self.builds += 1
        return self.engine
