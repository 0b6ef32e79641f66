"""`reward.reward_fn=graded`: the right answer first, the asked-for format second.

    1.0  exactly right (the task's own checker on the reply)
    0.5  the right answer in other words ("The answer is 12." for 12: the format-insensitive read of
         core.rewards.answer_scores)
    0.0  wrong, however well formatted

An exact-only reward lets a small model gain by learning the answer's shape alone, and its groups are
all-zero (no signal) until it does; a format bonus on top of correctness rewards a well-formatted wrong
answer. Here a wrong answer never scores, a right one always does, and the format is the last half point.

`graded_concise` gives that last half point by degrees: a right answer in other words earns
0.5 + 0.5 * len(answer) / len(reply) (reasoning-gym's own partial credit for a reply that contains the
answer). A model that always writes "45 + 23 = 68" never samples the bare "68" that `graded` pays 1.0 for,
so `graded` has no signal towards the asked format; here "= 68" already beats "45 + 23 = 68".
"""

from __future__ import annotations

from core.rewards.answer_scores import exact_score, lenient_score
from core.rewards.base import RewardInput

RIGHT_IN_OTHER_WORDS = 0.5


def graded_reward(sample: RewardInput) -> float:
    if exact_score(sample) >= 1.0:
        return 1.0
    return RIGHT_IN_OTHER_WORDS * lenient_score(sample)


def concise_graded_reward(sample: RewardInput) -> float:
    if exact_score(sample) >= 1.0:
        return 1.0
    if not lenient_score(sample):
        return 0.0
    reply = sample.response.strip()
    closeness = min(1.0, len(str(sample.ground_truth)) / max(1, len(reply)))
    return RIGHT_IN_OTHER_WORDS + (1.0 - RIGHT_IN_OTHER_WORDS) * closeness
