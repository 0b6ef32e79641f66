"""Scoring a batch: pick the reward function by name, run it over the batch in parallel, survive its bugs.

A reward function is user code running inside the training loop. One that raises on one odd
sample must not cost a multi-hour run, so by default that sample gets `error_score` and the
failure is counted (`reward/errors`) and logged once per batch; `raise_on_error` turns that off.
A call that runs past `timeout_s` (an answer checker stuck on a pathological reply) is abandoned
the same way and counted in `reward/timeouts`.
"""

from __future__ import annotations

import importlib
import logging
import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

import torch

from core.errors import RunDied, TandemError
from core.rewards.base import RewardInput
from core.rewards.pool import TIMED_OUT, DeadlinePool

if TYPE_CHECKING:
    import pluggy

    from core.data.base import PromptItem
    from core.rollout.base import RolloutOutput

log = logging.getLogger(__name__)

RewardFn = Callable[[RewardInput], float]


def resolve_reward_fn(name_or_path: str, pm: "pluggy.PluginManager") -> RewardFn:
    """A reward function from a plugin-provided name ("gsm8k") or a dotted path ("my_pkg.rewards:fn")."""
    if ":" in name_or_path:
        return _import_function(name_or_path)
    available: dict[str, RewardFn] = {}
    for provided in pm.hook.tandem_reward_functions():
        available.update(provided or {})
    if name_or_path not in available:
        names = ", ".join(sorted(available)) or "none"
        raise TandemError(
            f"unknown reward function '{name_or_path}'; available: {names} (or give 'module:function')"
        )
    return available[name_or_path]


def _import_function(path: str) -> RewardFn:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TandemError(f"reward function '{path}': cannot import module '{module_name}': {exc}") from None
    except SyntaxError as exc:
        raise TandemError(f"reward function '{path}': {exc.filename}:{exc.lineno}: syntax error: {exc.msg}") from None
    except (Exception, SystemExit) as exc:  # user code that fails (or exits) while being imported
        raise TandemError(f"reward function '{path}': importing '{module_name}' raised {type(exc).__name__}: {exc}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise TandemError(f"reward function '{path}': module '{module_name}' has no function '{attr}'")
    return fn


@dataclass
class RewardBatch:
    """Scores for one batch, in the order of the inputs."""

    scores: torch.Tensor  # [batch] float32
    errors: int  # samples whose function raised or returned a non-number
    timeouts: int = 0  # samples whose call ran past the timeout (not counted in errors)

    @property
    def metrics(self) -> dict[str, float]:
        return {"reward/errors": float(self.errors), "reward/timeouts": float(self.timeouts)}


class BatchScorer(Protocol):
    """What the trainer and `validate` call: a RewardScorer or a RewardModelScorer."""

    def score(self, samples: Sequence[RewardInput]) -> RewardBatch: ...

    def close(self) -> None: ...


class RewardScorer:
    """Runs one reward function over a batch with a thread or process pool, each call under a deadline.

    Threads suit fast pure-Python functions (little to gain, nothing to pickle); processes suit
    slow CPU-bound ones (symbolic math, code execution), whose function must then be importable.
    """

    def __init__(
        self,
        fn: RewardFn,
        workers: int = 4,
        executor: str = "thread",
        error_score: float = 0.0,
        raise_on_error: bool = False,
        timeout_s: float | None = None,
        stop_if_failed_fraction: float = 1.0,
    ):
        if executor not in ("thread", "process"):
            raise TandemError(f"reward.executor must be 'thread' or 'process', got '{executor}'")
        self.fn = fn
        self.name = getattr(fn, "__qualname__", repr(fn))
        self.error_score = error_score
        self.raise_on_error = raise_on_error
        self.timeout_s = timeout_s
        self.stop_if_failed_fraction = stop_if_failed_fraction
        self._pool = DeadlinePool(workers, executor, timeout_s)

    def score(self, samples: Sequence[RewardInput]) -> RewardBatch:
        results = self._pool.run(_call, [(self.fn, sample) for sample in samples])
        scores, errors, timeouts, first_failure = [], 0, 0, None
        for index, result in enumerate(results):
            if result == TIMED_OUT:
                first_failure = first_failure or f"sample {index} timed out after {self.timeout_s} s"
                if self.raise_on_error:
                    raise TandemError(f"reward function '{self.name}' timed out after {self.timeout_s} s on sample {index}")
                if timeouts == 0:
                    log.warning("reward function '%s' timed out after %s s on sample %d", self.name, self.timeout_s, index)
                timeouts += 1
                scores.append(self.error_score)
                continue
            value, error = result
            if error is not None:
                first_failure = first_failure or f"sample {index}: {error}"
                if self.raise_on_error:
                    raise TandemError(f"reward function '{self.name}' failed on sample {index}: {error}")
                if errors == 0:
                    log.warning("reward function '%s' failed on sample %d: %s", self.name, index, error)
                errors += 1
                value = self.error_score
            scores.append(value)
        failed = errors + timeouts
        if failed and failed >= self.stop_if_failed_fraction * len(results):
            raise RunDied(
                f"reward function '{self.name}' failed on {failed} of {len(results)} samples "
                f"(reward.stop_if_failed_fraction={self.stop_if_failed_fraction}); first: {first_failure}"
            )
        return RewardBatch(torch.tensor(scores, dtype=torch.float32), errors, timeouts)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def _call(fn_and_sample: tuple[RewardFn, RewardInput]) -> tuple[float, str | None]:
    """(score, None) or (nan, why it failed); module-level so process pools can pickle it."""
    fn, sample = fn_and_sample
    try:
        value = fn(sample)
    except TandemError:
        raise  # a configuration mistake (e.g. no rule for this data_source): fail, don't average it away
    except Exception as exc:  # user code: any other failure becomes this sample's error
        return math.nan, f"{type(exc).__name__}: {exc}"
    except SystemExit as exc:  # sys.exit() in user code would end the whole run, silently, with its code
        return math.nan, f"called sys.exit({exc.code!r})"
    if not isinstance(value, numbers.Real) or not math.isfinite(value):
        return math.nan, f"returned {value!r}, not a finite number"
    return float(value), None


def reward_inputs(samples: Sequence["PromptItem"], output: "RolloutOutput", tokenizer) -> list[RewardInput]:
    """One RewardInput per rollout row: the row's decoded response with its prompt's ground truth.

    `samples` are the prompts sent to the engine, in order; row i answers `samples[output.group_ids[i]]`.
    """
    responses = tokenizer.batch_decode(output.replies(), skip_special_tokens=True)
    inputs = []
    for group, response in zip(output.group_ids.tolist(), responses):
        sample = samples[group]
        inputs.append(
            RewardInput(
                response=response,
                ground_truth=sample.ground_truth,
                prompt=sample.prompt_text,
                data_source=sample.data_source,
                extra_info=sample.extra_info,
            )
        )
    return inputs
