"""Two scores for one reply: exact (the task's own checker, what a user of the task means by right) and
format-insensitive (the answer the reply gives, whatever surrounds it). core.eval reports both; the graded
rewards (core.rewards.graded) are built from them.

A model that learns only to answer in the expected shape gains on the first and not on the second; one
that learns the skill gains on both. Format-insensitive means:
- a numeric answer: the reply's last number ("The sum is 12." -> 12), compared by value;
- any other answer: the reply's last non-empty line, without "Answer:"-style lead-ins, quotes, markdown
  emphasis or a final full stop, compared case-insensitively (reasoning-gym: by the task's checker).
A base model writing on past its answer into a new question ("12\\n\\nQuestion: ...") is read up to that
question: `cut_at` is where the prompt template's own question marker starts.
"""

from __future__ import annotations

import json
import math
import re

from core.data.reasoning_gym import DATA_SOURCE_PREFIX, last_number, reasoning_gym_reward, score_fn
from core.rewards.base import RewardInput
from core.rewards.by_data_source import by_data_source

LEAD_IN = re.compile(r"^(?:the\s+)?(?:final\s+)?answer\s*(?:is)?\s*[:=]?\s*", re.IGNORECASE)


def exact_score(sample: RewardInput) -> float:
    """The task's own checker: reasoning-gym's `score_answer` on the reply, or the data source's rule."""
    if sample.data_source.startswith(DATA_SOURCE_PREFIX):
        return reasoning_gym_reward(sample)
    return by_data_source(sample)


def lenient_score(sample: RewardInput, cut_at: str | None = None) -> float:
    """1.0 if the answer the reply gives is right, however it is worded (module docstring), else 0.0."""
    reply = sample.response
    if cut_at and cut_at in reply:
        reply = reply[: reply.index(cut_at)]
    truth = str(sample.ground_truth if sample.ground_truth is not None else "")
    numeric = _number(truth) is not None
    answer = last_number(reply) if numeric else normalised_answer(reply)
    if sample.data_source.startswith(DATA_SOURCE_PREFIX):
        entry = json.loads(sample.extra_info["entry"])
        checker = score_fn(sample.data_source[len(DATA_SOURCE_PREFIX):])
        return float(float(checker(answer, entry)) >= 1.0 or _same_number(answer, truth))
    if numeric:
        return float(_same_number(answer, truth))
    return float(answer.lower() == normalised_answer(truth).lower())


def normalised_answer(reply: str) -> str:
    """The last non-empty line, without a lead-in ("Answer: "), emphasis, quotes or a final full stop."""
    lines = [line.strip() for line in reply.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    answer = LEAD_IN.sub("", lines[-1].strip("*_`# ")).strip("*_` ")
    return answer.rstrip(".").strip("\"'`*_ ")


def _number(text: str) -> float | None:
    try:
        value = float(text.replace(",", "").strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _same_number(answer: str, truth: str) -> bool:
    a, b = _number(answer), _number(truth)
    return a is not None and b is not None and abs(a - b) <= 1e-6 * max(1.0, abs(b))
