"""A run whose numbers died must say so: non-finite rewards, log-probs, losses or gradient norms stop
it with one line naming the step, the phase and the quantity (exit code 3), or, with
`trainer.on_nonfinite=skip`, skip such steps and stop after `trainer.max_nonfinite_steps` in a row.
The loop logs the step first, so metrics.jsonl shows the values that died.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

log = logging.getLogger("tandem")


def first_nonfinite(value: Any) -> float | None:
    """The first NaN/inf in a tensor or number, or None if all are finite (None values count as finite)."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        bad = value[~torch.isfinite(value)]
        return bad[0].item() if bad.numel() else None
    return None if math.isfinite(value) else float(value)


class NonFiniteGuard:
    def __init__(self, policy: str = "stop", max_in_a_row: int = 3, skippable: bool = True):
        self.policy = policy
        self.skippable = skippable  # the loop offers trainer.on_nonfinite=skip (RL does, SFT does not)
        self.max_in_a_row = max_in_a_row
        self.in_a_row = 0  # consecutive skipped steps
        self.skipped = 0  # skipped steps in the whole run

    def check(self, quantities: dict[tuple[str, str], Any]) -> str | None:
        """quantities: {(phase, what): tensor or number}. Returns why the run must stop, or None.

        A bad step under `skip` changed nothing: the actor applies no update whose gradient norm is
        not finite, and a NaN/inf reward or log-prob makes the gradient NaN."""
        for (phase, what), value in quantities.items():
            bad = first_nonfinite(value)
            if bad is None:
                continue
            where = f"non-finite {what} ({bad}) in the {phase} phase"
            if self.policy == "stop":
                hint = " (trainer.on_nonfinite=skip would skip such steps)" if self.skippable else ""
                return f"{where}; the run stopped{hint}"
            self.skipped += 1
            self.in_a_row += 1
            if self.in_a_row >= self.max_in_a_row:
                return f"{where}, {self.in_a_row} steps in a row (trainer.max_nonfinite_steps); the run stopped"
            return None
        self.in_a_row = 0
        return None


class CollapseWatch:
    """Tells a collapsed policy: its entropy risen to the uniform maximum (it says nothing any more), or a
    gradient norm of exactly 0 for `patience` steps although rewards vary within groups (the weights no longer
    respond: a GRPO step with varying rewards always has a gradient). A zero gradient under equal rewards is
    only warned about (nothing to learn from, not a broken policy). `vocab_size` is the model's (the logits'
    width), not the tokenizer's. A policy that starts at the maximum (random weights: the demo's builtin
    models, a step benchmark) has not collapsed when it stays there."""

    def __init__(self, vocab_size: int, patience: int = 3):
        self.max_entropy = math.log(max(vocab_size, 2))
        self.started_uniform: bool | None = None
        self.patience = patience
        self.zero_grad_steps = 0
        self.warned: set[str] = set()

    def check(self, step: int, entropy: float, grad_norm: float | None, rewards_vary: bool = False) -> str | None:
        """The diagnosis of a collapsed policy, or None (a zero gradient under equal rewards is warned, once)."""
        uniform = entropy >= 0.98 * self.max_entropy
        if self.started_uniform is None:
            self.started_uniform = uniform
        self.zero_grad_steps = self.zero_grad_steps + 1 if grad_norm == 0 else 0
        if uniform and not self.started_uniform:
            return (f"the policy collapsed at step {step}: its entropy {entropy:.2f} is at the uniform maximum "
                    f"{self.max_entropy:.2f}, it no longer prefers any token (trainer.lr too high?)")
        if self.zero_grad_steps >= self.patience and rewards_vary:
            return (f"the policy collapsed at step {step}: gradient norm exactly 0 for {self.zero_grad_steps} steps "
                    "although rewards vary within groups, so the weights no longer respond (trainer.lr too high?)")
        if self.zero_grad_steps >= self.patience:
            self.warn_once("zero_grad", f"step {step}: gradient norm exactly 0 for {self.zero_grad_steps} steps: every "
                           "group's rewards are equal, nothing to learn from (too easy or too hard a task?)")
        return None

    def warn_once(self, kind: str, message: str) -> None:
        """Log `message` the first time a warning of `kind` comes up in the run."""
        if kind not in self.warned:
            self.warned.add(kind)
            log.warning(message)


def rewards_vary_within_groups(scores, group_ids) -> bool:
    """Whether some prompt's responses scored differently ([rows] scores and group ids): a GRPO step learns."""
    import torch

    groups = torch.unique(group_ids, return_inverse=True)[1]
    low = torch.full((int(groups.max()) + 1,), float("inf")).scatter_reduce(0, groups, scores.float().cpu(), "amin")
    high = torch.full_like(low, -float("inf")).scatter_reduce(0, groups, scores.float().cpu(), "amax")
    return bool((high > low).any())
