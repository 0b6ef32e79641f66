"""SFT conversations from parquet/JSONL files, tokenised once at load time.

A row is either
    messages      [{"role": "system"|"user"|"assistant", "content": str}, ...]  (multi-turn)
or
    prompt        a string (one user message) or a list of messages
    response      the assistant's answer (a string)
and may carry `data_source` and `reward_model: {"ground_truth": ...}` (as RL datasets do) for the
validation reward; without a ground truth the reference answer (the last assistant message) is used.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from core.data.rl_dataset import read_records
from core.errors import TandemError
from sft.chat import prompt_ids, tokenize_chat

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SFTExample:
    input_ids: list[int]  # [seq_len] whole conversation, template applied, cut to max_length
    loss_mask: list[bool]  # [seq_len] True on assistant tokens
    prompt_ids: list[int]  # [prompt_len] everything before the last assistant turn + generation prompt
    prompt_text: str  # the same prompt as text (what reward functions and logs see)
    reference: str  # the last assistant message, what validation generations are compared with
    ground_truth: Any = None  # handed to the reward function (defaults to `reference`)
    data_source: str = ""
    extra_info: dict = field(default_factory=dict)
    truncated: bool = False  # the conversation was longer than max_length


def conversation_from_row(row: dict, data_cfg, where: str) -> list[dict]:
    """The row's chat messages, from the messages column or the prompt/response columns."""
    if row.get(data_cfg.messages_key) is not None:
        messages = row[data_cfg.messages_key]
        column = data_cfg.messages_key
    elif row.get(data_cfg.prompt_key) is not None and row.get(data_cfg.response_key) is not None:
        prompt, response = row[data_cfg.prompt_key], row[data_cfg.response_key]
        if not isinstance(response, str):
            raise TandemError(f"{where}: column '{data_cfg.response_key}' must be a string")
        turns = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        messages = [*turns, {"role": "assistant", "content": response}]
        column = data_cfg.prompt_key
    else:
        raise TandemError(
            f"{where}: needs a '{data_cfg.messages_key}' column or both '{data_cfg.prompt_key}' and "
            f"'{data_cfg.response_key}' (columns found: {', '.join(sorted(row)) or 'none'})"
        )
    ok = isinstance(messages, list) and messages and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in messages
    )
    if not ok:
        raise TandemError(f"{where}: column '{column}' must be a list of {{'role': str, 'content': str}} messages")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def make_example(tokenizer, messages: list[dict], data_cfg, where: str, **reward_fields) -> SFTExample:
    chat = tokenize_chat(tokenizer, messages, where)
    prompt = prompt_ids(tokenizer, messages)[-data_cfg.max_prompt_length:]  # keep the end: the question
    reference = [m for m in messages if m["role"] == "assistant"][-1]["content"]
    if reward_fields.get("ground_truth") is None:
        reward_fields["ground_truth"] = reference
    return SFTExample(
        input_ids=chat.input_ids[: data_cfg.max_length],
        loss_mask=chat.loss_mask[: data_cfg.max_length],
        prompt_ids=prompt,
        prompt_text=tokenizer.decode(prompt),
        reference=reference,
        truncated=len(chat.input_ids) > data_cfg.max_length,
        **reward_fields,
    )


def load_sft_examples(files: Sequence[str], tokenizer, data_cfg, limit: int | None = None) -> list[SFTExample]:
    """Read `files` into examples; conversations longer than `data.max_length` are cut (and counted)."""
    if not files:
        raise TandemError("no data files given (data.train_files / data.val_files)")
    if getattr(tokenizer, "chat_template", None) is None:
        raise TandemError(f"tokenizer '{tokenizer.name_or_path}' has no chat template; SFT data are chat messages")
    examples, cut = [], 0
    for path in files:
        for index, row in enumerate(read_records(path)):
            if limit is not None and len(examples) >= limit:
                break
            where = f"{path}: row {index}"
            messages = conversation_from_row(row, data_cfg, where)
            reward_model = row.get("reward_model") or {}
            example = make_example(
                tokenizer, messages, data_cfg, where,
                ground_truth=reward_model.get("ground_truth") if isinstance(reward_model, dict) else None,
                data_source=row.get("data_source") or Path(path).stem,
                extra_info=row.get("extra_info") or {},
            )
            cut += example.truncated
            examples.append(example)
    if cut:
        log.warning("cut %d of %d conversations to data.max_length=%d tokens", cut, len(examples), data_cfg.max_length)
    if not any(any(e.loss_mask) for e in examples):
        raise TandemError(f"no assistant tokens left in {', '.join(files)} after cutting to data.max_length")
    return examples


def reverse_letters_examples(tokenizer, data_cfg, count: int, seed: int) -> list[SFTExample]:
    """The built-in task (sft/synthetic.py) as examples."""
    from sft.synthetic import DATA_SOURCE, reverse_letters_conversations

    return [
        make_example(tokenizer, messages, data_cfg, f"synthetic conversation {i}", data_source=DATA_SOURCE)
        for i, messages in enumerate(reverse_letters_conversations(count, seed))
    ]


def reference_turn(template: str, entry: dict) -> str:
    """The assistant's turn for a reasoning-gym entry: `data.response_template` filled from it.

    "{answer}" -> "141"; "<calculator>{metadata[expression]}</calculator>..." -> "<calculator>261 - 120</calculator>..."
    """
    try:
        return template.format(**entry)
    except (KeyError, IndexError, AttributeError, ValueError) as exc:
        fields = ", ".join(sorted(entry)) + ", metadata[" + ", ".join(sorted(entry.get("metadata") or {})) + "]"
        raise TandemError(
            f"data.response_template={template!r} cannot be filled ({type(exc).__name__}: {exc}); "
            f"the entries have: {fields}"
        ) from None


def reasoning_gym_examples(tokenizer, data_cfg) -> tuple[list[SFTExample], list[SFTExample]]:
    """reasoning-gym questions answered by `data.response_template` (core's generator and split)."""
    from core.data.reasoning_gym import train_and_validation_rows

    def examples(rows: list[dict], part: str) -> list[SFTExample]:
        return [
            make_example(tokenizer, [*row["prompt"], {"role": "assistant", "content": reference_turn(
                             data_cfg.response_template, json.loads(row["extra_info"]["entry"]))}],
                         data_cfg, f"reasoning-gym {part} row {i}", ground_truth=row["reward_model"]["ground_truth"],
                         data_source=row["data_source"], extra_info=row["extra_info"])
            for i, row in enumerate(rows)
        ]

    train, val = train_and_validation_rows(data_cfg.reasoning_gym, data_cfg.val_size, data_cfg.seed)
    return examples(train, "train"), examples(val, "validation")


def load_data(cfg, tokenizer) -> tuple[list[SFTExample], list[SFTExample]]:
    """(train, validation) examples of `data.task`: the built-in task or the configured files."""
    data = cfg.data
    if data.task == "reverse_letters":
        train = reverse_letters_examples(tokenizer, data, data.num_train, seed=data.seed)
        val = reverse_letters_examples(tokenizer, data, data.num_val, seed=data.seed + 1_000_003)
    elif data.task == "reasoning_gym":
        train, val = reasoning_gym_examples(tokenizer, data)
    elif data.task == "file":
        train = load_sft_examples(list(data.train_files), tokenizer, data)
        val = load_sft_examples(list(data.val_files), tokenizer, data, limit=data.max_val_samples)
    else:
        raise TandemError(f"data.task={data.task!r} is unknown; use 'file', 'reasoning_gym' or the built-in 'reverse_letters'")
    return train, val[: data.max_val_samples]
