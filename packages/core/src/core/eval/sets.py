"""The sets a model is evaluated on, disjoint from training by construction.

- `heldout`: the training task's own distribution. A generated task (reasoning-gym) draws it from a
  generator seed that neither training (`data.seed`) nor validation uses, then drops every question whose
  text training or validation has (small tasks repeat questions across seeds) and its own repeats. A file
  task takes `data.val_files` less the prompts that `data.train_files` also holds.
- `shifted`: one notch harder (`eval.shifted`: more terms, more digits, longer words), drawn and filtered
  the same way from a seed of its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from core.data.rl_dataset import RLDataset, load_rl_dataset, rl_dataset_from_rows
from core.errors import TandemError

log = logging.getLogger(__name__)

HELDOUT_SEED_OFFSET = 2_000_029  # validation uses data.seed + 1_000_003 (core.data.reasoning_gym)
SHIFTED_SEED_OFFSET = 3_000_017


@dataclass
class EvalSet:
    name: str  # "heldout" | "shifted"
    dataset: RLDataset
    dropped: int  # questions drawn but dropped as seen in training or validation, or repeated


def eval_sets(data_cfg, eval_cfg, tokenizer) -> list[EvalSet]:
    """The run's evaluation sets ([] for a task without held-out questions, the builtin demo)."""
    if data_cfg.task == "reasoning_gym":
        return _reasoning_gym_sets(data_cfg, eval_cfg, tokenizer)
    if data_cfg.task == "file" and data_cfg.val_files:
        return [_file_heldout(data_cfg, tokenizer)]
    return []


def _reasoning_gym_sets(data_cfg, eval_cfg, tokenizer) -> list[EvalSet]:
    from core.data.reasoning_gym import VALIDATION_SEED_OFFSET, generate_rows

    rg = data_cfg.reasoning_gym
    unknown = sorted(set(eval_cfg.shifted) - set(rg.datasets))
    if unknown:
        raise TandemError(f"eval.shifted names {', '.join(unknown)}, which data.reasoning_gym.datasets does not have")
    heldout, shifted, dropped = [], [], {"heldout": 0, "shifted": 0}
    for name, options in rg.datasets.items():
        options = dict(options or {})
        seen = _texts(generate_rows(name, rg.train_size, data_cfg.seed, options, rg.instruction))
        seen |= _texts(generate_rows(name, data_cfg.val_size, data_cfg.seed + VALIDATION_SEED_OFFSET, options,
                                     rg.instruction))
        drawn = generate_rows(name, eval_cfg.size, data_cfg.seed + HELDOUT_SEED_OFFSET, options, rg.instruction)
        heldout.extend(_unseen(drawn, seen, dropped, "heldout"))
        if name in eval_cfg.shifted:
            harder = {**options, **dict(eval_cfg.shifted[name])}
            drawn = generate_rows(name, eval_cfg.size, data_cfg.seed + SHIFTED_SEED_OFFSET, harder, rg.instruction)
            shifted.extend(_unseen(drawn, seen, dropped, "shifted"))
    sets = [("heldout", heldout)] + ([("shifted", shifted)] if eval_cfg.shifted else [])
    return [EvalSet(name, _dataset(rows, data_cfg, tokenizer, name), dropped[name]) for name, rows in sets]


def _file_heldout(data_cfg, tokenizer) -> EvalSet:
    def load(files):
        return load_rl_dataset(list(files), tokenizer, data_cfg.max_prompt_length, data_cfg.filter_overlong_prompts,
                               data_cfg.prompt_template,
                               data_cfg.few_shot)

    seen = {sample.prompt_text for sample in load(data_cfg.train_files).samples}
    validation = load(data_cfg.val_files).samples
    kept = []
    for sample in validation:
        if sample.prompt_text not in seen:
            seen.add(sample.prompt_text)  # and no repeats
            kept.append(sample)
    dropped = len(validation) - len(kept)
    if not kept:
        raise TandemError("eval: every prompt of data.val_files is also in data.train_files; nothing is held out")
    return EvalSet("heldout", RLDataset(kept), dropped)


def _texts(rows: list[dict]) -> set[str]:
    return {row["prompt"][0]["content"] for row in rows}


def _unseen(rows: list[dict], seen: set[str], dropped: dict[str, int], name: str) -> list[dict]:
    kept = []
    for row in rows:
        text = row["prompt"][0]["content"]
        if text in seen:
            dropped[name] += 1
            continue
        seen.add(text)  # a repeat inside the set is dropped too, and the shifted set skips held-out questions
        kept.append(row)
    return kept


def _dataset(rows: list[dict], data_cfg, tokenizer, name: str) -> RLDataset:
    if not rows:
        raise TandemError(f"eval: every question of the {name} set was seen in training; the task is too small "
                          "for a held-out set (raise its difficulty, or lower data.reasoning_gym.train_size)")
    return rl_dataset_from_rows(rows, tokenizer, data_cfg.max_prompt_length, data_cfg.filter_overlong_prompts,
                                f"eval {name} rows", data_cfg.prompt_template,
                               data_cfg.few_shot)
