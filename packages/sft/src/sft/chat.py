"""Chat conversations to token ids, with a loss mask that covers assistant tokens only.

The mask is found without template cooperation (no `{% generation %}` markers needed): the tokens
of an assistant turn are those that `template(messages[:i + 1])` adds after
`template(messages[:i], add_generation_prompt=True)`. That holds for every turn of a multi-turn
conversation, and includes the turn's end marker (e.g. `<|im_end|>`), so the model learns to stop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.errors import TandemError


@dataclass(frozen=True)
class TokenizedChat:
    input_ids: list[int]  # [seq_len] the whole conversation, chat template applied
    loss_mask: list[bool]  # [seq_len] True on tokens written by the assistant


def _template_ids(tokenizer, messages: list[dict], add_generation_prompt: bool) -> list[int]:
    if not messages:
        return []
    return list(
        tokenizer.apply_chat_template(
            messages, add_generation_prompt=add_generation_prompt, tokenize=True, return_dict=False
        )
    )


def tokenize_chat(tokenizer, messages: list[dict], where: str = "conversation") -> TokenizedChat:
    """Template `messages` and mark each assistant turn's tokens; `where` names it in errors."""
    if not any(m["role"] == "assistant" for m in messages):
        raise TandemError(f"{where}: no assistant message, nothing to learn")
    input_ids = _template_ids(tokenizer, messages, add_generation_prompt=False)
    loss_mask = [False] * len(input_ids)
    for turn, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prefix = _template_ids(tokenizer, messages[:turn], add_generation_prompt=True)
        through_turn = _template_ids(tokenizer, messages[: turn + 1], add_generation_prompt=False)
        start, end = len(prefix), len(through_turn)
        if input_ids[:start] != prefix or input_ids[:end] != through_turn:
            raise TandemError(
                f"{where}: the chat template of '{tokenizer.name_or_path}' is not prefix-consistent "
                f"(turn {turn} changes earlier tokens), so assistant tokens cannot be located"
            )
        loss_mask[start:end] = [True] * (end - start)
    return TokenizedChat(input_ids, loss_mask)


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """The generation prompt for the conversation's last assistant turn: everything before it."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return _template_ids(tokenizer, messages[:last], add_generation_prompt=True)


def shifted_labels(input_ids: torch.Tensor, loss_mask: torch.Tensor, ignore: int = -100) -> torch.Tensor:
    """Next-token labels [rows, seq_len]: label t is token t + 1 where it is an assistant token.

    input_ids [1, 4] = [u, u, a, a], loss_mask = [F, F, T, T] -> labels = [-100, a0, a1, -100]
    (position 1 predicts the first assistant token; the last position predicts nothing).
    """
    labels = torch.full_like(input_ids, ignore)
    labels[:, :-1] = torch.where(loss_mask[:, 1:].bool(), input_ids[:, 1:], torch.full_like(input_ids[:, 1:], ignore))
    return labels
