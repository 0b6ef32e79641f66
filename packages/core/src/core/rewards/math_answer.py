"""MATH (Hendrycks competition math) answers: the last `\\boxed{...}`, compared with math-verify.

math-verify (Hugging Face's; TRL's and verl's math rewards use it) parses both answers from LaTeX into
sympy and compares them as values: `\\frac34`, `3/4` and `0.75` are one answer, `x = 4` is 4, units and
degree signs go. Its own signal-based timeouts are off (they work only in the main thread); the reward
pool's deadline (`reward.timeout_s`) bounds a pathological parse instead.
"""

from __future__ import annotations

from core.rewards.base import RewardInput


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (or `\\fbox{...}`, or `\\boxed x`), braces balanced."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    rest = text[start:]
    if rest.startswith("\\boxed "):  # "\boxed 5" without braces ends at the next "$" or space
        words = rest[len("\\boxed ") :].split("$")[0].split()
        return words[0] if words else None
    open_at = rest.find("{")
    if open_at < 0:
        return None
    depth = 0
    for i in range(open_at, len(rest)):
        depth += {"{": 1, "}": -1}.get(rest[i], 0)
        if depth == 0:
            return rest[open_at + 1 : i]
    return None  # unbalanced: the response was cut off inside the box


def is_equivalent(answer: str, truth: str) -> bool:
    """Whether two LaTeX answers are the same value (math-verify); unparseable text is equal to nothing."""
    from math_verify import parse, verify

    gold = parse(f"${truth}$", parsing_timeout=None)
    given = parse(f"${answer}$", parsing_timeout=None)
    return bool(gold and given and verify(gold, given, timeout_seconds=None))


def math_boxed(sample: RewardInput) -> float:
    """1.0 if the last boxed answer in the response is the ground truth's value (math-verify)."""
    answer = last_boxed(sample.response)
    truth = str(sample.ground_truth)
    # Ground truths may be stored as the whole solution; take their boxed answer then.
    truth = last_boxed(truth) or truth
    return float(answer is not None and is_equivalent(answer, truth))
