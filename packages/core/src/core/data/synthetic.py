"""The built-in demo task: repeat the letters of the prompt.

Prompt `cab=`, ideal response `cab`. It needs no download, its reward is exact, and a random
0.1M-parameter model starts near 0 and reaches ~0.4 within 100 GRPO steps (seconds on a CPU).
The demo caps responses at 3 tokens, so the score measures copying alone, not learning to stop.
"""

from __future__ import annotations

import random

from core.data.base import PromptItem
from core.data.rl_dataset import RLDataset
from core.plugins.hookspecs import hookimpl
from core.rewards.base import RewardInput

DATA_SOURCE = "synthetic/repeat_letters"


class RepeatLettersTask:
    def __init__(self, tokenizer, seed: int = 0, alphabet: str = "abcde", min_len: int = 3, max_len: int = 3):
        self.tokenizer = tokenizer
        self.alphabet = alphabet
        self.lengths = (min_len, max_len)
        self.seed = seed
        self.drawn = 0  # prompts drawn so far: the whole resumable state
        self._rng = random.Random(seed)

    def next_batch(self, size: int) -> list[PromptItem]:
        self.drawn += size
        return [self._draw(self._rng) for _ in range(size)]

    def validation_set(self, size: int) -> RLDataset:
        """A fixed set of prompts drawn from a generator of its own, so training draws don't shift it."""
        rng = random.Random(f"validation-{self.seed}")
        return RLDataset([self._draw(rng) for _ in range(size)])

    def _draw(self, rng: random.Random) -> PromptItem:
        letters = "".join(rng.choices(self.alphabet, k=rng.randint(*self.lengths)))
        prompt = letters + "="
        ids = self.tokenizer(prompt, add_special_tokens=False).input_ids
        return PromptItem(ids, prompt, data_source=DATA_SOURCE, ground_truth=letters)

    def state_dict(self) -> dict:
        return {"seed": self.seed, "drawn": self.drawn}

    def load_state_dict(self, state: dict) -> None:
        self.__init__(self.tokenizer, state["seed"], self.alphabet, *self.lengths)
        self.next_batch(state["drawn"])


def repeat_letters_reward(sample: RewardInput) -> float:
    """Fraction of positions that repeat the target, over the longer of the two strings.

    "cab" -> 1.0; "ca" -> 2/3; "cabxx" -> 3/5; "" -> 0.
    """
    target, response = sample.ground_truth, sample.response
    if not target and not response:
        return 1.0
    hits = sum(a == b for a, b in zip(response, target))
    return hits / max(len(target), len(response))


@hookimpl
def tandem_reward_functions():
    return {"repeat_letters": repeat_letters_reward}
