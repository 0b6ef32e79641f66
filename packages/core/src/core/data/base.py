"""What the training loop consumes: prompts as token ids, with what their rewards need."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class PromptItem:
    prompt_ids: list[int]  # already templated and tokenised; engines never re-tokenise
    prompt_text: str = ""  # the templated prompt as text, for reward functions and logs
    data_source: str = ""  # selects the reward function and groups validation metrics
    ground_truth: Any = None  # handed to the reward function
    extra_info: dict = field(default_factory=dict)


class PromptSource(Protocol):
    """An endless, seeded stream of training prompts with a resumable position."""

    def next_batch(self, size: int) -> list[PromptItem]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...
