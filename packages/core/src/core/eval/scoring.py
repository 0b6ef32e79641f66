"""core.eval's own arithmetic beside the two scores (core.rewards.answer_scores): pass@k, and where a base
model's invented next question starts."""

from __future__ import annotations

import math


def pass_at_k(samples: int, correct: int, k: int) -> float:
    """The unbiased pass@k estimate from `samples` draws of which `correct` were right (Chen et al., 2021):
    1 - C(samples - correct, k) / C(samples, k)."""
    if samples - correct < k:
        return 1.0
    return 1.0 - math.comb(samples - correct, k) / math.comb(samples, k)


def question_marker(prompt_template: str | None) -> str | None:
    """Where a base model's next invented question starts: the plain prompt template's text before
    {content} ("Question:" for "Question: {content}\\nAnswer:"); None for chat prompts."""
    if not prompt_template:
        return None
    marker = prompt_template.split("{content}")[0].strip()
    return marker or None
