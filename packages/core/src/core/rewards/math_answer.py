"""MATH (Hendrycks competition math) answers: the last `\\boxed{...}`, compared after normalisation.

The normalisation follows the rules of the MATH paper's `is_equiv`, which verl also uses: strip
LaTeX spacing and sizing commands, units and degree signs, write fractions and square roots in
one canonical form, and treat `0.5` as `\\frac{1}{2}`. Two answers are equal when their
normalised strings are equal; nothing is evaluated symbolically.
"""

from __future__ import annotations

import re

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


def normalize(answer: str) -> str:
    """A canonical string for a MATH answer (see the module docstring)."""
    s = answer.replace("\n", "").replace("\\!", "")
    s = s.replace("\\\\", "\\").replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    s = s.replace("\\$", "").replace("$", "")
    s = _remove_trailing_text_units(s)
    s = s.replace("\\%", "").replace("%", "")
    # ".5" -> "0.5", including after a space or an opening brace
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if s.startswith("."):
        s = "0" + s
    # "x = 5" -> "5" (a short variable name on the left only; "a+b=5" is kept as an equation)
    sides = s.split("=")
    if len(sides) == 2 and len(sides[0].strip()) <= 2:
        s = sides[1]
    s = _brace_sqrt_arguments(s)
    s = s.replace(" ", "")
    s = _brace_frac_arguments(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    return _slash_to_frac(s)


def is_equivalent(a: str, b: str) -> bool:
    return normalize(a) == normalize(b)


def math_boxed(sample: RewardInput) -> float:
    """1.0 if the last boxed answer in the response equals the ground truth after normalisation."""
    answer = last_boxed(sample.response)
    truth = str(sample.ground_truth)
    # Ground truths may be stored as the whole solution; take their boxed answer then.
    truth = last_boxed(truth) or truth
    return float(answer is not None and is_equivalent(answer, truth))


def _remove_trailing_text_units(s: str) -> str:
    # "5 \text{ cm}" -> "5"
    if "\\text{ " in s:
        return s.split("\\text{ ")[0]
    return s


def _brace_sqrt_arguments(s: str) -> str:
    # "\sqrt3" -> "\sqrt{3}"
    return re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", s)


def _brace_frac_arguments(s: str) -> str:
    # "\frac12" -> "\frac{1}{2}", "\frac1{72}" -> "\frac{1}{72}"
    s = re.sub(r"\\frac(\w)(\w)", r"\\frac{\1}{\2}", s)
    return re.sub(r"\\frac(\w)\{", r"\\frac{\1}{", s)


def _slash_to_frac(s: str) -> str:
    # "3/4" -> "\frac{3}{4}" for plain integers only
    match = re.fullmatch(r"(-?\d+)/(\d+)", s)
    return f"\\frac{{{match.group(1)}}}{{{match.group(2)}}}" if match else s
