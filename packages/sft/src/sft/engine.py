"""The rollout engine validation generates with: made once, reused, asleep in between, always closed.

The backend's plugin builds it (vLLM on GPU, the HF engine on CPU) together with the sharding
manager that pushes the trainer's *current* weights into it in place. If the backend's engine
cannot be built, or fails while generating, validation switches to HF generation on the trainer's
device, says why in the log, and the run goes on. A switch during generation happens on all ranks
together, so ranks whose weight push involves collectives stay in step.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch

from core.errors import TandemError
from core.rollout.base import EngineSettings, EngineTarget, RolloutEngine, RolloutOutput, SamplingParams, pad_responses
from core.sharding.base import ShardingManager
from sft.trainer import all_reduce_sum

if TYPE_CHECKING:
    from core.backends.base import Backend

log = logging.getLogger("tandem")


@dataclass
class EngineAndSync:
    engine: RolloutEngine
    sharding: ShardingManager  # `with sharding:` wakes the engine and pushes the weights; exit sleeps it
    label: str  # for logs: "VllmRolloutEngine", "HFRolloutEngine (fallback)"


@dataclass
class Generation:
    output: RolloutOutput
    sync_s: float  # weight push (and wake-up) before generating
    generate_s: float
    engine: str  # label of the engine that produced `output`


def backend_engine_factory(backend: "Backend", settings: EngineSettings, target: EngineTarget,
                           trainer_model: torch.nn.Module) -> Callable[[], EngineAndSync]:
    """Build the backend's engine and the sharding manager that feeds it."""

    def build() -> EngineAndSync:
        engine = backend.make_rollout_engine(settings, target)
        try:
            sharding = backend.make_sharding_manager(settings, engine, trainer_model)
        except BaseException:
            engine.close()
            raise
        return EngineAndSync(engine, sharding, type(engine).__name__)

    return build


def hf_engine_factory(model_dir: str, trainer_model: torch.nn.Module) -> Callable[[], EngineAndSync]:
    """The fallback: the HF engine on the trainer's device, fed by the HF sharding manager."""

    def build() -> EngineAndSync:
        from core.rollout.hf_engine import HFRolloutEngine
        from core.sharding.hf import HFShardingManager

        device = next(trainer_model.parameters()).device
        dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
        engine = HFRolloutEngine.from_pretrained(model_dir, device=str(device), dtype=dtype)
        return EngineAndSync(engine, HFShardingManager(engine, trainer_model), "HFRolloutEngine (fallback)")

    return build


class ValidationEngine:
    """`with ValidationEngine(build, fallback) as engine: engine.generate(prompts, params)`.

    `build` makes the backend's engine on first use (once); `fallback` (None: no fallback) makes the
    HF one if `build` or a generation fails. Configuration mistakes (TandemError) are not papered over.
    """

    def __init__(self, build: Callable[[], EngineAndSync], fallback: Callable[[], EngineAndSync] | None,
                 sleep_between: bool = True):
        self._build = build
        self._fallback = fallback
        self.sleep_between = sleep_between  # put a freshly built engine to sleep until the first validation
        self.current: EngineAndSync | None = None
        self.fallback_reason: str | None = None  # why the backend's engine is not the one in use

    def __enter__(self) -> "ValidationEngine":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> Generation:
        """One batched call (may be empty on a rank with no share); the weights are pushed first."""
        failure = None
        try:
            generation = self._generate(self._engine(), prompts, params)
        except TandemError:
            raise
        except Exception as exc:  # vLLM died, CUDA error...: HF generation keeps the run going
            if self._fallback is None or self.fallback_reason is not None:
                raise
            failure = f"{self.current.label} failed while generating: {type(exc).__name__}: {exc}"
        (ranks_failed,) = all_reduce_sum([float(failure is not None)], torch.device("cpu"))
        if not ranks_failed:
            return generation
        self._switch_to_fallback(failure or f"the engine failed on {int(ranks_failed)} other rank(s)")
        return self._generate(self.current, prompts, params)

    def close(self) -> None:
        if self.current is not None:
            self.current.engine.close()
            self.current = None

    def _engine(self) -> EngineAndSync:
        if self.current is None:
            try:
                self.current = self._build()
            except TandemError:
                raise
            except Exception as exc:
                if self._fallback is None:
                    raise
                self._switch_to_fallback(f"the backend's engine could not start: {type(exc).__name__}: {exc}")
                return self.current
            if self.sleep_between:
                self.current.engine.sleep()
        return self.current

    def _switch_to_fallback(self, reason: str) -> None:
        log.warning("validation: %s; generating with HF instead", reason)
        self.close()
        self.fallback_reason = reason
        self.current = self._fallback()
        self.current.engine.sleep()

    @staticmethod
    def _generate(current: EngineAndSync, prompts: list[list[int]], params: SamplingParams) -> Generation:
        start = time.perf_counter()
        with current.sharding:
            synced = time.perf_counter()
            output = current.engine.generate(prompts, params) if prompts else _empty_output()
        return Generation(output, synced - start, time.perf_counter() - synced, current.label)


def _empty_output() -> RolloutOutput:
    ids, logprobs, mask = pad_responses([], [], 0)
    empty = torch.zeros(0, dtype=torch.long)
    return RolloutOutput([], ids, logprobs, mask, group_ids=empty, finished=empty.bool())


def sampling_params(val_cfg, tokenizer: Any) -> SamplingParams:
    """SamplingParams from `validation.*`; stop strings become stop token ids (each must be one token)."""
    stop_ids = []
    for text in val_cfg.stop:
        ids = tokenizer.encode(text, add_special_tokens=False)
        if len(ids) != 1:
            raise TandemError(f"validation.stop entry {text!r} is {len(ids)} tokens; stop strings must be single tokens")
        stop_ids.append(ids[0])
    return SamplingParams(
        n=1, temperature=val_cfg.temperature, top_p=val_cfg.top_p, top_k=val_cfg.top_k,
        max_tokens=val_cfg.max_tokens, stop_token_ids=tuple(stop_ids), seed=val_cfg.seed,
        logprobs=False,  # validation scores the text; the engine's logprob path would only cost time
    )
