"""Real tasks without a download: reasoning-gym's procedural generators as RL rows, scored by its own checkers.

`data=reasoning_gym` generates the questions in memory; `python -m core.data.reasoning_gym --output DIR`
writes the same rows as train/test parquet files in verl's format, and `data.task=file` over them
gives the very same prompts (tested). Each row carries its reasoning-gym entry (question, answer,
metadata) as JSON in `extra_info["entry"]`, so the reward function can call the dataset's own
`score_answer` without regenerating anything.

Validation and training questions come from generators seeded apart, and a training question that
also appears in validation is dropped, so validation accuracy is measured on unseen questions.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import re
from pathlib import Path
from typing import Any, Mapping

from core.errors import TandemError, exit_on_user_error

DATA_SOURCE_PREFIX = "reasoning_gym/"
INSTALL = "pip install reasoning-gym"
VALIDATION_SEED_OFFSET = 1_000_003  # validation's generator seed = data.seed + this


def _reasoning_gym():
    if importlib.util.find_spec("reasoning_gym") is None:
        raise TandemError(f"data.task=reasoning_gym needs the reasoning-gym package: {INSTALL}")
    import reasoning_gym

    return reasoning_gym


def generate_rows(name: str, size: int, seed: int, options: Mapping[str, Any], instruction: str) -> list[dict]:
    """`size` rows of reasoning-gym dataset `name` built with `options` (its config keys, e.g. max_digits)."""
    rg = _reasoning_gym()
    try:
        dataset = rg.create_dataset(name, size=size, seed=seed, **dict(options))
    except (ValueError, TypeError, AssertionError) as exc:
        raise TandemError(f"data.reasoning_gym.datasets.{name}: {exc}") from None
    return [_row(name, entry, index, instruction) for index, entry in enumerate(dataset)]


def _row(name: str, entry: dict, index: int, instruction: str) -> dict:
    return {
        "data_source": DATA_SOURCE_PREFIX + name,
        "prompt": [{"role": "user", "content": entry["question"] + instruction}],
        "ability": "reasoning",
        "reward_model": {"style": "rule", "ground_truth": str(entry["answer"])},
        "extra_info": {"index": index, "entry": json.dumps(entry, default=str)},
    }


def train_and_validation_rows(rg_cfg, val_size: int, seed: int) -> tuple[list[dict], list[dict]]:
    """(train rows, validation rows) over every dataset of `data.reasoning_gym`, split as the module says."""
    if not rg_cfg.datasets:
        raise TandemError("data.task=reasoning_gym needs data.reasoning_gym.datasets, e.g. {basic_arithmetic: {}}")
    train, validation = [], []
    for name, options in rg_cfg.datasets.items():
        options = dict(options or {})
        val = generate_rows(name, val_size, seed + VALIDATION_SEED_OFFSET, options, rg_cfg.instruction)
        seen = {row["prompt"][0]["content"] for row in val}
        train.extend(
            row for row in generate_rows(name, rg_cfg.train_size, seed, options, rg_cfg.instruction)
            if row["prompt"][0]["content"] not in seen
        )
        validation.extend(val)
    return train, validation


ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def extract_answer(response: str) -> str:
    """The last `<answer>...</answer>` if the reply has one (reasoning-gym's convention), else the whole reply."""
    tagged = ANSWER_TAG.findall(response)
    return (tagged[-1] if tagged else response).strip()


LAST_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def last_number(response: str) -> str:
    """The reply's last number ("The answer is 12." -> "12"), or "" if it has none."""
    numbers = LAST_NUMBER.findall(response.replace(",", ""))
    return numbers[-1] if numbers else ""


@functools.lru_cache(maxsize=None)
def score_fn(name: str):
    try:
        return _reasoning_gym().get_score_answer_fn(name)
    except ValueError:
        raise TandemError(f"reasoning-gym has no dataset '{name}' to score with") from None


def score(sample, answer: str) -> float:
    """reasoning-gym's `score_answer` for the sample's dataset: 1.0 for the exact answer, partial credit
    for a reply that contains it (len(answer) / len(reply)), 0 otherwise."""
    if not sample.data_source.startswith(DATA_SOURCE_PREFIX):
        raise TandemError(
            f"reward 'reasoning_gym' scores reasoning-gym rows only, got data_source '{sample.data_source}'"
        )
    entry = json.loads(sample.extra_info["entry"])
    return float(score_fn(sample.data_source[len(DATA_SOURCE_PREFIX):])(answer, entry))


def reasoning_gym_reward(sample) -> float:
    """The library's scorer on the reply (or its `<answer>` tag): the task's own notion of correct."""
    return score(sample, extract_answer(sample.response))


def reasoning_gym_last_number_reward(sample) -> float:
    """The library's scorer on the reply's last number: lenient about everything around the answer."""
    return score(sample, last_number(sample.response))


def write_parquet(rows: list[dict], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    """`python -m core.data.reasoning_gym --output DIR [--dataset NAME --option key=value ...]`."""
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    parser = argparse.ArgumentParser(prog="python -m core.data.reasoning_gym", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, type=Path, help="directory for train.parquet / test.parquet")
    parser.add_argument("--dataset", default="basic_arithmetic")
    parser.add_argument("--option", action="append", default=[], help="a dataset config key, e.g. max_digits=2")
    parser.add_argument("--train-size", type=int, default=10000)
    parser.add_argument("--val-size", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--instruction", default=" Give only the final answer.")
    args = parser.parse_args(argv)
    options = OmegaConf.to_container(OmegaConf.from_dotlist(args.option))
    rg_cfg = SimpleNamespace(datasets={args.dataset: options}, train_size=args.train_size, instruction=args.instruction)
    train, validation = train_and_validation_rows(rg_cfg, args.val_size, args.seed)
    for split, rows in (("train", train), ("test", validation)):
        write_parquet(rows, args.output / f"{split}.parquet")
        print(f"wrote {len(rows)} {args.dataset} rows to {args.output / f'{split}.parquet'}")


if __name__ == "__main__":
    main()
