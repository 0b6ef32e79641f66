"""Micro-batch size on an accelerator: a token budget sized from the memory the trainer has free.

`trainer.max_tokens_per_gpu: null` on a GPU. A fixed row count cannot suit every model, response length and
card: the `demo` preset's 128 rows of a 0.5B model with 426-token rows need ~80 GiB and ran out of memory on an
H100, while 32 rows left the update at 28% MFU where 64 reached 44% (H100, 2026-12-06). So the budget is
measured instead. Before the first update it is a guess: `START_TOKENS`, or fewer where a generous estimate from
the model's shape (`PRIOR_BYTES` per layer and hidden + intermediate width) would not fit; every update then sets
the next budget from what it used, per token, against what was free when it began:

    bytes_per_token = peak rise over the update / tokens of its largest micro-batch
    next budget     = HEADROOM * free at the update's start / bytes_per_token

The rise also counts what does not scale with tokens (the gradients), so the per-token figure errs high and the
budget low. The log-prob passes use the actor's budget (they keep no activations, so it fits them too); PPO's
critic keeps one of its own, measured the same way around its update; SFT's `trainer.micro_batch_tokens: null`
is the same budget over its micro-batches (4096 tokens on a CPU). A CPU, `max_tokens_per_gpu: 0` (rows) or N
(tokens) turn it off.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Iterator

import torch

from core.distributed.devices import device_module
from core.errors import TandemError
from core.trainer.memory import restart_peak

START_TOKENS = 16384  # the first guess's ceiling: ~22 GiB for a 0.5B model (1.4 MiB a token on an H100)
HEADROOM = 0.8  # the share of free memory a micro-batch may fill (fragmentation, the next step's longer rows)
MIN_TOKENS = 1024  # never below (a row longer than the budget still goes alone)
# bytes a token costs per layer and unit of (hidden + intermediate) width, before any measurement: 1.5x the 0.5B
# shape's measured 10.6 (1.4 MiB a token / (24 layers x (896 + 4864))), to err towards fitting
PRIOR_BYTES = 16


def next_budget(peak_rise: int, largest_micro_tokens: int, free: int, headroom: float = HEADROOM) -> int:
    """Tokens per micro-batch that fill `headroom` of `free` bytes at the measured bytes per token.

    E.g. a 16,384-token micro-batch raised the peak by 24 GiB (1.5 MiB a token) with 60 GiB free:
    0.8 * 60 GiB / 1.5 MiB = 32,768 tokens.
    """
    per_token = peak_rise / max(largest_micro_tokens, 1)
    if per_token <= 0:
        return MIN_TOKENS  # nothing measured (no micro-batch ran): stay small rather than guess
    return max(MIN_TOKENS, int(headroom * free / per_token))


def prior_bytes_per_token(model_config, element_size: int = 2) -> int | None:
    """The first guess of a token's cost from the model's shape and its weights' element size (the 0.5B
    figure was measured in bf16: fp32 weights, with fp32 activations, count twice); None when the config
    does not say the shape.

    E.g. Qwen2.5-1.5B in bf16 (28 layers, 1536 + 8960 wide): 16 x 28 x 10,496 = 4.7 MB a token, so with 40 GiB
    free the first budget is 0.8 x 40 GiB / 4.7 MB = 7,307 tokens instead of 16,384.
    """
    try:
        layers, width = model_config.num_hidden_layers, model_config.hidden_size + model_config.intermediate_size
    except AttributeError:
        return None
    return PRIOR_BYTES * layers * width * element_size // 2


class MemoryTokenBudget:
    """The actor's token budget, re-measured by every update (one per data-parallel rank)."""

    def __init__(self, device: torch.device, prior_bytes_per_token: int | None = None):
        self.device = device
        self.prior_bytes_per_token = prior_bytes_per_token
        self.measured: int | None = None  # the budget the last update measured; None before the first
        self._first_guess: int | None = None  # the budget before any measurement, fixed at its first use
        self.largest_micro_tokens = 0  # the largest micro-batch since `measure` began

    @classmethod
    def for_setting(cls, configured: int | None, model: torch.nn.Module) -> "MemoryTokenBudget | None":
        """`model`'s budget where the configured one (`trainer.max_tokens_per_gpu`, SFT's `trainer.micro_batch_tokens`)
        is null and the model is on an accelerator; None: the config decides."""
        weight = next(model.parameters())
        if configured is not None or device_module(weight.device) is None:
            return None
        return cls(weight.device, prior_bytes_per_token(getattr(model, "config", None), weight.element_size()))

    @property
    def tokens(self) -> int:
        """The budget the next plan uses."""
        if self.measured is not None:
            return self.measured
        if self._first_guess is None:  # the free memory the first plan sees (the engine asleep)
            fits = START_TOKENS if self.prior_bytes_per_token is None else HEADROOM * self._free() / self.prior_bytes_per_token
            self._first_guess = max(MIN_TOKENS, min(START_TOKENS, int(fits)))
        return self._first_guess

    def planned(self, micro_tokens: list[int]) -> None:
        """Note the token counts of the micro-batches about to run."""
        self.largest_micro_tokens = max([self.largest_micro_tokens, *micro_tokens])

    @contextmanager
    def measure(self) -> Iterator[None]:
        """Around one update: afterwards `tokens` is sized from its peak and from what was free when it began."""
        module = device_module(self.device)
        start = module.memory_allocated(self.device)
        free = self._free()
        restart_peak(self.device)
        self.largest_micro_tokens = 0
        yield
        rise = module.max_memory_allocated(self.device) - start
        if self.largest_micro_tokens:
            self.measured = next_budget(rise, self.largest_micro_tokens, free)

    def _free(self) -> int:
        """The device's free memory and the blocks this process's allocator holds unused."""
        module = device_module(self.device)
        return module.mem_get_info(self.device)[0] + module.memory_reserved(self.device) - module.memory_allocated(self.device)


def sizing_hint(budget: MemoryTokenBudget | None, tokens_key: str, tokens: int | None, rows_key: str | None = None,
                rows: int | None = None) -> str:
    """What sized a phase's micro-batches, and what to change, for an out-of-memory message."""
    if budget is not None:
        return (f"{budget.tokens:,}-token micro-batches sized from free memory: set {tokens_key} to fewer tokens, "
                "or model.gradient_checkpointing=true")
    if tokens or rows_key is None:
        return f"{tokens_key}={tokens} tokens a micro-batch: lower it, or set it to null to size micro-batches from free memory"
    return (f"{rows_key}={rows} rows a micro-batch: lower it, or set {tokens_key}=null to size micro-batches "
            "from free memory")


def rl_sizing_hint(budget: MemoryTokenBudget | None, trainer_cfg) -> str:
    """`sizing_hint` for the RL actor's and critic's micro-batches."""
    return sizing_hint(budget, "trainer.max_tokens_per_gpu", trainer_cfg.max_tokens_per_gpu, "trainer.micro_batch_size",
                       trainer_cfg.micro_batch_size)


@contextmanager
def out_of_memory_named(phase: str, hint) -> Iterator[None]:
    """The accelerator running out of memory in `phase` as one line naming what sized its micro-batches
    (`hint()`, see `sizing_hint`), instead of a traceback through compiled kernels."""
    try:
        yield
    except torch.OutOfMemoryError:
        raise TandemError(f"out of GPU memory in the {phase} with {hint()}") from None


@contextmanager
def sized_update(budget: MemoryTokenBudget | None, phase: str, hint) -> Iterator[None]:
    """Around an optimizer phase: an out-of-memory error named (`out_of_memory_named`) and, with a `budget`,
    the next budget measured from this phase."""
    with budget.measure() if budget else nullcontext(), out_of_memory_named(phase, hint):
        yield
