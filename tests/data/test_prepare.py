"""`python -m core.data.prepare` on small files shaped like the public GSM8K and MATH downloads."""

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.data.prepare import GSM8K_INSTRUCTION, main, prepare
from core.errors import TandemError

RAW = "tests/fixtures"


def read(path):
    return pq.read_table(path).to_pylist()


def test_gsm8k_jsonl_directory(tmp_path):
    counts = prepare("gsm8k", f"{RAW}/gsm8k_raw", tmp_path)
    assert counts == {"train": 8, "test": 4}
    rows = read(tmp_path / "train.parquet")
    assert rows[0]["prompt"] == [
        {"role": "user", "content": f"Tom has 3 apples and buys 4 more. How many apples does he have? {GSM8K_INSTRUCTION}"}
    ]
    assert rows[0]["data_source"] == "openai/gsm8k"
    assert rows[0]["reward_model"] == {"style": "rule", "ground_truth": "7"}
    assert rows[5]["reward_model"]["ground_truth"] == "3600"  # "#### 3,600"
    assert [r["extra_info"]["index"] for r in rows] == list(range(8))


def test_gsm8k_hf_parquet_layout(tmp_path):
    # openai/gsm8k on the hub: main/train-00000-of-00001.parquet
    source = tmp_path / "gsm8k" / "main"
    source.mkdir(parents=True)
    raw = [json.loads(line) for line in open(f"{RAW}/gsm8k_raw/test.jsonl")]
    pq.write_table(pa.Table.from_pylist(raw), source / "test-00000-of-00001.parquet")
    assert prepare("gsm8k", tmp_path / "gsm8k", tmp_path / "out") == {"test": 4}


def test_math_one_json_per_problem(tmp_path):
    assert prepare("math", f"{RAW}/math_raw", tmp_path) == {"train": 3, "test": 1}
    (test_row,) = read(tmp_path / "test.parquet")
    assert test_row["data_source"] == "hendrycks/math"
    assert test_row["reward_model"]["ground_truth"] == "(2, 5)"
    assert test_row["prompt"][0]["content"].endswith("within \\boxed{}.")
    assert test_row["extra_info"]["level"] == "Level 3" and test_row["extra_info"]["type"] == "Algebra"
    fractions = read(tmp_path / "train.parquet")[1]
    assert fractions["reward_model"]["ground_truth"] == "\\frac{3}{4}"


def test_math_jsonl_with_split_flag(tmp_path):
    problems = [json.load(open(f"{RAW}/math_raw/train/algebra/{i}.json")) for i in (1, 2)]
    problems.append({"problem": "No answer", "solution": "We give up.", "level": "", "type": ""})
    path = tmp_path / "competition_math.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in problems))
    assert prepare("math", path, tmp_path / "out", split="train") == {"train": 2}  # unboxed row skipped


def test_errors_name_the_culprit(tmp_path):
    with pytest.raises(TandemError, match="column 'question' is missing"):
        prepare("gsm8k", f"{RAW}/math_raw", tmp_path)
    shutil.copy(f"{RAW}/gsm8k_raw/test.jsonl", tmp_path / "gsm8k.jsonl")
    with pytest.raises(TandemError, match="train or the test split"):
        prepare("gsm8k", tmp_path / "gsm8k.jsonl", tmp_path / "out")
    with pytest.raises(TandemError, match="input not found"):
        prepare("gsm8k", tmp_path / "missing", tmp_path / "out")


def test_cli(tmp_path, capsys):
    main(["gsm8k", "--input", f"{RAW}/gsm8k_raw", "--output", str(tmp_path)])
    assert "wrote 8 gsm8k rows" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["gsm8k", "--input", str(tmp_path / "missing"), "--output", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "tandem: error: input not found" in capsys.readouterr().err


def test_the_committed_fixture_is_what_prepare_writes(tmp_path):
    prepare("gsm8k", f"{RAW}/gsm8k_raw", tmp_path)
    for split in ("train", "test"):
        assert read(tmp_path / f"{split}.parquet") == read(f"{RAW}/gsm8k/{split}.parquet")
