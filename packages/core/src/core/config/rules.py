"""A value rule (the key, a predicate on its value, what is allowed) and the one line a broken rule gives.

Each key's rule is written once: config/ranges.py holds the run's, core.algorithms.spec the algorithm's
(`check_algorithm_config` serves code that builds an algorithm config without the CLI).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

from core.errors import TandemError

Rule = tuple[str, Callable[[Any], bool], str]  # key, predicate on its value, what is allowed
MISSING = object()  # what a getter returns for a key its config does not have (SFT's has no rollout.n)

POSITIVE_INT = (lambda v: v >= 1, "an integer >= 1")
POSITIVE = (lambda v: v > 0 and math.isfinite(v), "a finite number > 0")
NON_NEGATIVE = (lambda v: v >= 0 and math.isfinite(v), "a finite number >= 0")


def one_of(choices: Iterable[str]) -> tuple[Callable[[Any], bool], str]:
    choices = tuple(choices)
    return (lambda v: v in choices, "one of " + ", ".join(choices))


def check_rules(get: Callable[[str], Any], rules: Iterable[Rule]) -> None:
    """Raise TandemError for the first rule whose key's value (`get(key)`) breaks it."""
    for key, allowed, description in rules:
        value = get(key)
        if value is not MISSING and not allowed(value):
            raise TandemError(f"{key}={value} is out of range: it must be {description}")
