"""GSM8K answers: the number after `####`, compared as a number.

Two ways to find the model's answer, as in verl's GSM8K scorer:
- strict: the response must state `#### <number>` (what the prompt asks for);
- flexible: the last number anywhere in the response, for models that ignore the format.
"""

from __future__ import annotations

import re

from core.rewards.base import RewardInput

_STRICT = re.compile(r"####\s*\$?\s*(-?[0-9][0-9,]*(?:\.[0-9]+)?)")
_ANY_NUMBER = re.compile(r"-?[0-9][0-9,]*(?:\.[0-9]+)?")
# Only the tail is searched: a long chain of thought is full of intermediate numbers, and an
# answer is stated at the end (verl clips to the last 300 characters for the same reason).
_TAIL_CHARS = 300


def extract_answer(response: str, method: str = "strict") -> str | None:
    """The final number in `response` as a canonical string ("1,234.50" -> "1234.5"), or None."""
    tail = response[-_TAIL_CHARS:]
    if method == "strict":
        found = _STRICT.findall(tail)
    elif method == "flexible":
        found = _ANY_NUMBER.findall(tail)
    else:
        raise ValueError(f"unknown GSM8K extraction method {method!r}; use 'strict' or 'flexible'")
    return canonical_number(found[-1]) if found else None


def canonical_number(text: str) -> str:
    """Drop thousands separators and meaningless zeros so "1,000.0" and "1000" compare equal."""
    text = text.replace(",", "").strip()
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def gsm8k_strict(sample: RewardInput) -> float:
    """1.0 if the response ends with `#### <the right number>`, else 0.0."""
    return _score(sample, "strict")


def gsm8k_flexible(sample: RewardInput) -> float:
    """1.0 if the last number in the response is the right one, else 0.0."""
    return _score(sample, "flexible")


def _score(sample: RewardInput, method: str) -> float:
    answer = extract_answer(sample.response, method)
    return float(answer is not None and answer == canonical_number(str(sample.ground_truth)))
