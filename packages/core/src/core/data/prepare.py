"""Convert public math datasets, as a user downloads them, into Tandem's RL parquet format.

    python -m core.data.prepare gsm8k --input gsm8k/main --output data/gsm8k
    python -m core.data.prepare math --input MATH --output data/math
    python -m core.data.prepare gsm8k --input openai/gsm8k/main --output data/gsm8k   # from the HF cache (core.hub)

Input is a file or a directory searched recursively for .parquet, .jsonl and .json files; each
file's split (train or test) is read from its path ("train-00000-of-00001.parquet",
"MATH/test/algebra/1.json"), or forced with --split. Writes OUTPUT/train.parquet and/or
OUTPUT/test.parquet.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from core.data.rl_dataset import read_records
from core.hub import dataset_path
from core.errors import TandemError, exit_on_user_error
from core.rewards.gsm8k import canonical_number
from core.rewards.math_answer import last_boxed

GSM8K_INSTRUCTION = 'Let\'s think step by step and output the final answer after "####".'
MATH_INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."
GSM8K_SOURCE = "openai/gsm8k"
MATH_SOURCE = "hendrycks/math"
SPLITS = ("train", "test")


def gsm8k_row(raw: dict, split: str, index: int) -> dict | None:
    """openai/gsm8k {question, answer: "...#### 72"} -> one RL row."""
    answer = raw["answer"]
    if "####" not in answer:
        return None
    truth = canonical_number(answer.split("####")[-1])
    return _rl_row(
        GSM8K_SOURCE,
        f"{raw['question']} {GSM8K_INSTRUCTION}",
        truth,
        {"split": split, "index": index, "question": raw["question"], "answer": answer},
    )


def math_row(raw: dict, split: str, index: int) -> dict | None:
    """Hendrycks MATH {problem, solution (with \\boxed{}), level, type} -> one RL row."""
    truth = last_boxed(raw["solution"])
    if truth is None:
        return None
    extra = {"split": split, "index": index, "level": raw.get("level", ""), "type": raw.get("type", "")}
    return _rl_row(MATH_SOURCE, f"{raw['problem']} {MATH_INSTRUCTION}", truth, extra)


def _rl_row(data_source: str, content: str, ground_truth: str, extra_info: dict) -> dict:
    return {
        "data_source": data_source,
        "prompt": [{"role": "user", "content": content}],
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": ground_truth},
        "extra_info": extra_info,
    }


# dataset name -> (row converter, the raw columns it reads)
CONVERTERS: dict[str, tuple[Callable[[dict, str, int], dict | None], tuple[str, ...]]] = {
    "gsm8k": (gsm8k_row, ("question", "answer")),
    "math": (math_row, ("problem", "solution")),
}


def prepare(dataset: str, input_path: str | Path, output_dir: str | Path, split: str | None = None) -> dict[str, int]:
    """Convert every input file; returns the number of rows written per split."""
    if dataset not in CONVERTERS:
        raise TandemError(f"unknown dataset '{dataset}'; choose one of {', '.join(CONVERTERS)}")
    convert, columns = CONVERTERS[dataset]
    rows: dict[str, list[dict]] = {name: [] for name in SPLITS}
    skipped = 0
    input_path = dataset_path(str(input_path), "--input")
    for path in _input_files(input_path):
        file_split = split or _split_of(path, input_path)
        for raw in read_records(path):
            missing = [c for c in columns if not isinstance(raw.get(c), str)]
            if missing:
                raise TandemError(f"{path}: column '{missing[0]}' is missing or not a string ({dataset} needs {columns})")
            row = convert(raw, file_split, len(rows[file_split]))
            if row is None:
                skipped += 1
            else:
                rows[file_split].append(row)
    if skipped:
        print(f"skipped {skipped} rows without a final answer")
    return _write(rows, Path(output_dir))


def _input_files(input_path: Path) -> list[Path]:
    if input_path.is_file():
        return [input_path]
    if not input_path.is_dir():
        raise TandemError(f"input not found: {input_path}")
    files = sorted(p for ext in ("parquet", "jsonl", "json") for p in input_path.rglob(f"*.{ext}"))
    if not files:
        raise TandemError(f"no .parquet, .jsonl or .json files under {input_path}")
    return files


def _split_of(path: Path, input_path: Path) -> str:
    """"train" or "test", from the path from the input directory down (folders above it don't count)."""
    below = (input_path.name, *path.relative_to(input_path).parts) if input_path.is_dir() else (path.name,)
    for part in reversed(below):
        for name in SPLITS:
            if part == name or part.startswith(f"{name}.") or part.startswith(f"{name}-") or part.startswith(f"{name}_"):
                return name
    raise TandemError(f"cannot tell whether {path} is the train or the test split; name it so or pass --split")


def _write(rows: dict[str, list[dict]], output_dir: Path) -> dict[str, int]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    output_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, split_rows in rows.items():
        if split_rows:
            pq.write_table(pa.Table.from_pylist(split_rows), output_dir / f"{split}.parquet")
            counts[split] = len(split_rows)
    return counts


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m core.data.prepare", description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=sorted(CONVERTERS))
    parser.add_argument("--input", required=True,
                        help="a downloaded file, a directory of them, or a Hub dataset (org/name[/folder])")
    parser.add_argument("--output", required=True, help="directory for train.parquet / test.parquet")
    parser.add_argument("--split", choices=SPLITS, help="force the split instead of reading it from file names")
    args = parser.parse_args(argv)
    counts = prepare(args.dataset, args.input, args.output, args.split)
    for split, count in counts.items():
        print(f"wrote {count} {args.dataset} rows to {Path(args.output) / f'{split}.parquet'}")


if __name__ == "__main__":
    main()
