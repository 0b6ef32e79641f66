"""Prompt datasets for RL, in the de-facto format (verl's), read from parquet or JSONL.

One row per prompt:
    prompt        list of chat messages [{"role": "user", "content": "..."}] (a plain string is
                  taken as one user message)
    data_source   dataset name, e.g. "openai/gsm8k"; picks the reward rule under reward "auto"
    reward_model  {"style": "rule", "ground_truth": "72"}
    extra_info    optional dict passed to reward functions untouched

The model's chat template is applied once at load time, so every step sends ready token ids.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from core.data.base import PromptItem
from core.errors import TandemError

log = logging.getLogger(__name__)


@dataclass
class RLDataset:
    samples: list[PromptItem]
    num_filtered: int = 0  # prompts dropped for being longer than max_prompt_length

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> PromptItem:
        return self.samples[index]


def load_rl_dataset(
    files: Sequence[str], tokenizer, max_prompt_length: int, filter_overlong: bool = True,
    prompt_template: str | None = None, few_shot: Sequence[Mapping[str, str]] = (),
) -> RLDataset:
    """Read `files`, apply the chat template (or `prompt_template`, `prompt_token_ids` says how), and drop
    (or left-truncate) prompts over `max_prompt_length` tokens."""
    if not files:
        raise TandemError("no data files given (data.train_files / data.val_files)")
    records = [record for path in files for record in _checked_rows(read_records(path), str(path))]
    return _templated(records, tokenizer, max_prompt_length, filter_overlong, ", ".join(files), prompt_template,
                      few_shot)


def rl_dataset_from_rows(
    rows: Sequence[dict], tokenizer, max_prompt_length: int, filter_overlong: bool = True, where: str = "rows",
    prompt_template: str | None = None, few_shot: Sequence[Mapping[str, str]] = (),
) -> RLDataset:
    """The dataset `load_rl_dataset` would give for a file holding `rows` (rows generated in memory)."""
    return _templated(_checked_rows(rows, where), tokenizer, max_prompt_length, filter_overlong, where, prompt_template,
                      few_shot)


def prompt_token_ids(conversations: list[list[dict]], tokenizer, prompt_template: str | None,
                     few_shot: Sequence[Mapping[str, str]] = ()) -> list[list[int]]:
    """Token ids of each conversation: the chat template with its generation prompt, or, for base models,
    `prompt_template` ("Question: {content}\nAnswer:") filled with the user messages' text, with the
    tokenizer's own special tokens (a BOS where the model wants one).

    `few_shot` ({user, assistant} pairs, data.few_shot) come first: as earlier chat turns, or as filled
    templates each followed by its answer and a blank line."""
    if prompt_template is not None:
        def filled(text: str) -> str:
            return prompt_template.replace("{content}", text)

        shots = "".join(f"{filled(shot['user'])} {shot['assistant']}\n\n" for shot in few_shot)
        texts = [shots + filled("\n".join(m["content"] for m in messages if m["role"] == "user"))
                 for messages in conversations]
        return [list(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]]
    if getattr(tokenizer, "chat_template", None) is None:
        raise TandemError(f"tokenizer '{tokenizer.name_or_path}' has no chat template (a base model?); give the "
                          "prompt as plain text: data.prompt_template='Question: {content}\\nAnswer:'")
    turns = [message for shot in few_shot for message in
             ({"role": "user", "content": shot["user"]}, {"role": "assistant", "content": shot["assistant"]})]
    return tokenizer.apply_chat_template([turns + list(messages) for messages in conversations],
                                         add_generation_prompt=True, tokenize=True, return_dict=False)


def _templated(records, tokenizer, max_prompt_length: int, filter_overlong: bool, where: str,
               prompt_template: str | None = None, few_shot: Sequence[Mapping[str, str]] = ()) -> RLDataset:
    if not records:
        raise TandemError(f"{where} holds no rows")
    all_ids = prompt_token_ids([messages for messages, _ in records], tokenizer, prompt_template, few_shot)
    kept, filtered = [], 0
    for ids, (_, row) in zip(all_ids, records):
        if len(ids) > max_prompt_length:
            if filter_overlong:
                filtered += 1
                continue
            ids = ids[-max_prompt_length:]  # keep the end: the question and the generation prompt
        kept.append((ids, row))
    if filtered:
        log.warning("dropped %d of %d prompts longer than max_prompt_length=%d", filtered, len(records), max_prompt_length)
    if not kept:
        raise TandemError(
            f"all {len(records)} prompts in {where} are longer than "
            f"data.max_prompt_length={max_prompt_length}; raise it or set data.filter_overlong_prompts=false"
        )
    texts = tokenizer.batch_decode([ids for ids, _ in kept])
    samples = [
        PromptItem(
            prompt_ids=list(ids),
            prompt_text=text,
            data_source=row["data_source"],
            ground_truth=row["reward_model"].get("ground_truth"),
            extra_info=row.get("extra_info") or {},
        )
        for (ids, row), text in zip(kept, texts)
    ]
    return RLDataset(samples, num_filtered=filtered)


def read_records(path: str | Path) -> list[dict]:
    """All rows of a parquet, JSONL or JSON (a list of rows, or one row) file as dicts; `path` may name a file
    of a Hugging Face Hub dataset (`org/name/path/in/repo.parquet`, core.hub)."""
    from core.hub import dataset_path

    path = dataset_path(str(path), "data file", file=True)
    if not path.is_file():
        raise TandemError(f"data file not found: {path}")
    if path.stat().st_size == 0:
        raise TandemError(f"data file {path} is empty")
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except (pa.ArrowInvalid, OSError) as exc:
            raise TandemError(f"data file {path} is not a readable parquet file: {exc}") from None
    if path.suffix == ".json":
        rows = _load_json(path)
        return rows if isinstance(rows, list) else [rows]  # one object is one row (MATH ships one per file)
    if path.suffix == ".jsonl":
        rows = []
        for number, line in enumerate(_text(path).splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise TandemError(f"{path}: line {number} is not valid JSON: {exc}") from exc
        return rows
    raise TandemError(f"{path}: unsupported data file type '{path.suffix}'; use .parquet, .jsonl or .json")


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise TandemError(f"{path}: line {line} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _load_json(path: Path) -> Any:
    try:
        return json.loads(_text(path))
    except json.JSONDecodeError as exc:
        raise TandemError(f"{path}: not valid JSON: {exc}") from exc


def _checked_rows(rows: Sequence[dict], source: str) -> list[tuple[list[dict], dict]]:
    """(chat messages, row) for each row, or a TandemError naming the file, row and column."""
    checked = []
    for index, row in enumerate(rows):
        where = f"{source}: row {index}"
        for column in ("prompt", "data_source", "reward_model"):
            if row.get(column) is None:
                raise TandemError(f"{where}: missing column '{column}'")
        messages = _as_messages(row["prompt"], where)
        if not isinstance(row["data_source"], str):
            raise TandemError(f"{where}: column 'data_source' must be a string, got {type(row['data_source']).__name__}")
        if not isinstance(row["reward_model"], dict):
            raise TandemError(
                f"{where}: column 'reward_model' must be a dict like {{'style': 'rule', 'ground_truth': ...}}, "
                f"got {type(row['reward_model']).__name__}"
            )
        if row["reward_model"].get("style", "rule") == "rule" and row["reward_model"].get("ground_truth") is None:
            raise TandemError(f"{where}: reward_model has no 'ground_truth' (a rule reward scores against it)")
        if not isinstance(row.get("extra_info") or {}, dict):
            raise TandemError(f"{where}: column 'extra_info' must be a dict, got {type(row['extra_info']).__name__}")
        checked.append((messages, row))
    return checked


def _as_messages(prompt: Any, where: str) -> list[dict]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    ok = isinstance(prompt, list) and prompt and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in prompt
    )
    if not ok:
        raise TandemError(f"{where}: column 'prompt' must be a list of {{'role': str, 'content': str}} messages")
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


class EpochSampler:
    """An endless, seeded stream of dataset indices, reshuffled every epoch, resumable mid-epoch.

    Epoch e visits the items in the order of `randperm(num_items)` seeded with `seed + e`, so a
    resumed run given `state_dict()` continues with exactly the indices the original would have drawn.
    """

    def __init__(self, num_items: int, seed: int = 0, shuffle: bool = True):
        if num_items <= 0:
            raise TandemError("cannot sample from an empty dataset")
        self.num_items = num_items
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.position = 0  # how many items of the current epoch were handed out
        self._order = self._epoch_order()

    def next_indices(self, count: int) -> list[int]:
        indices = []
        while len(indices) < count:
            take = min(count - len(indices), self.num_items - self.position)
            indices.extend(self._order[self.position : self.position + take])
            self.position += take
            if self.position == self.num_items:
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._epoch_order()
        return indices

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "num_items": self.num_items}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["num_items"] != self.num_items:
            raise TandemError(
                f"cannot resume the data sampler: the checkpoint saw {state['num_items']} prompts, "
                f"the dataset now has {self.num_items}"
            )
        self.seed, self.epoch, self.position = state["seed"], state["epoch"], state["position"]
        self._order = self._epoch_order()

    def _epoch_order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.num_items))
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.num_items, generator=generator).tolist()


class DatasetPromptSource:
    """The training loop's prompt stream over a dataset: seeded epochs, resumable (a PromptSource)."""

    def __init__(self, dataset: RLDataset, seed: int = 0, shuffle: bool = True):
        self.dataset = dataset
        self.sampler = EpochSampler(len(dataset), seed=seed, shuffle=shuffle)

    def next_batch(self, size: int) -> list[PromptItem]:
        return [self.dataset[i] for i in self.sampler.next_indices(size)]

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)
