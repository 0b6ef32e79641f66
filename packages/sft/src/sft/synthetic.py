"""The built-in SFT demo task: reverse the letters, as a chat.

    user: "reverse: cab"    assistant: "bac"

It needs no download, has an exact reward (position-wise match with the reversed letters, the
same rule as core's repeat-letters task). The 0.8M-parameter `builtin:small-qwen2` goes from 0.0 to
~1.0 exact match in 200-300 steps (about a minute on 2 CPU cores); the 0.12M tiny model cannot learn
it: with 2 layers and 1 head it plateaus at ~0.2 (validation loss ~1.2), whatever the schedule. This module is also sft's
plugin: it registers the reward under the name `reverse_letters` through `tandem_reward_functions`.
"""

from __future__ import annotations

import random

from core.data.synthetic import repeat_letters_reward
from core.plugins.hookspecs import hookimpl

DATA_SOURCE = "synthetic/reverse_letters"


def reverse_letters_conversations(count: int, seed: int, alphabet: str = "abcdefgh", lengths=(3, 5)) -> list[list[dict]]:
    rng = random.Random(seed)
    conversations = []
    for _ in range(count):
        letters = "".join(rng.choices(alphabet, k=rng.randint(*lengths)))
        conversations.append(
            [{"role": "user", "content": f"reverse: {letters}"}, {"role": "assistant", "content": letters[::-1]}]
        )
    return conversations


@hookimpl
def tandem_reward_functions():
    # the reference answer is the ground truth, so "repeat the ground truth" scores reversal
    return {"reverse_letters": repeat_letters_reward}
