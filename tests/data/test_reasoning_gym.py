"""reasoning-gym as a data source: deterministic disjoint splits, the same prompts in memory and
through parquet, and the library's own scorer as the reward."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

pytest.importorskip("reasoning_gym")

from core.data.reasoning_gym import extract_answer, last_number, main, train_and_validation_rows  # noqa: E402
from core.data.rl_dataset import load_rl_dataset  # noqa: E402
from core.errors import TandemError  # noqa: E402
from core.rewards.base import RewardInput  # noqa: E402
from core.rewards.builtin import by_data_source, reasoning_gym_last_number_reward, reasoning_gym_reward  # noqa: E402
from core.trainer.setup import make_prompt_source  # noqa: E402

ARITHMETIC = {"basic_arithmetic": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2}}
INSTRUCTION = " Give only the final answer."


def rg_cfg(datasets=ARITHMETIC, train_size=60):
    return SimpleNamespace(datasets=datasets, train_size=train_size, instruction=INSTRUCTION)


def test_rows_are_deterministic_disjoint_and_in_verl_format():
    train, val = train_and_validation_rows(rg_cfg(), val_size=20, seed=3)
    again_train, again_val = train_and_validation_rows(rg_cfg(), val_size=20, seed=3)
    assert (train, val) == (again_train, again_val)
    assert len(val) == 20 and 0 < len(train) <= 60
    questions = lambda rows: {r["prompt"][0]["content"] for r in rows}  # noqa: E731
    assert not questions(train) & questions(val)
    row = val[0]
    assert row["data_source"] == "reasoning_gym/basic_arithmetic"
    assert row["prompt"][0]["role"] == "user" and row["prompt"][0]["content"].endswith(INSTRUCTION)
    entry = json.loads(row["extra_info"]["entry"])
    assert row["reward_model"]["ground_truth"] == entry["answer"]
    assert row["prompt"][0]["content"] == entry["question"] + INSTRUCTION


def test_in_memory_and_parquet_give_the_same_prompts(tmp_path, tiny_tokenizer):
    main(["--output", str(tmp_path), "--dataset", "basic_arithmetic", "--option", "max_digits=2",
          "--option", "min_terms=2", "--option", "max_terms=2", "--option", "min_digits=1",
          "--train-size", "60", "--val-size", "20", "--seed", "3"])
    data_cfg = SimpleNamespace(task="reasoning_gym", reasoning_gym=rg_cfg(), val_size=20, seed=3,
                               max_prompt_length=128, filter_overlong_prompts=True, shuffle=False, prompt_template=None,
                               few_shot=[])
    source, val = make_prompt_source(data_cfg, tiny_tokenizer)
    from_files_val = load_rl_dataset([str(tmp_path / "test.parquet")], tiny_tokenizer, 128)
    from_files_train = load_rl_dataset([str(tmp_path / "train.parquet")], tiny_tokenizer, 128)
    assert val.samples == from_files_val.samples
    assert source.dataset.samples == from_files_train.samples


def sample(response: str, row: dict) -> RewardInput:
    return RewardInput(response, row["reward_model"]["ground_truth"], "", row["data_source"], row["extra_info"])


def test_the_librarys_scorer_is_the_reward():
    _, val = train_and_validation_rows(rg_cfg(), val_size=5, seed=0)
    row = val[0]
    answer = row["reward_model"]["ground_truth"]
    assert reasoning_gym_reward(sample(answer, row)) == 1.0
    assert reasoning_gym_reward(sample(f" {answer}\n", row)) == 1.0
    assert reasoning_gym_reward(sample(f"thinking...<answer>{answer}</answer>", row)) == 1.0
    assert reasoning_gym_reward(sample("no idea", row)) == 0.0
    # the library's partial credit: the answer inside a longer reply scores len(answer) / len(reply)
    verbose = f"The answer is {answer}."
    assert reasoning_gym_reward(sample(verbose, row)) == pytest.approx(len(answer) / len(verbose))
    assert reasoning_gym_last_number_reward(sample(verbose, row)) == 1.0
    assert by_data_source(sample(answer, row)) == 1.0  # reward "auto" knows reasoning-gym rows


def test_answer_extraction():
    assert extract_answer("a <answer>1</answer> b <answer> 2 </answer>") == "2"
    assert extract_answer("  42\n") == "42"
    assert last_number("3 + 4 = 7, so -1,200.5 then") == "-1200.5"
    assert last_number("none") == ""


def test_errors_name_the_culprit():
    with pytest.raises(TandemError, match="no_such_dataset"):
        train_and_validation_rows(rg_cfg({"no_such_dataset": {}}), val_size=2, seed=0)
    with pytest.raises(TandemError, match="needs data.reasoning_gym.datasets"):
        train_and_validation_rows(rg_cfg({}), val_size=2, seed=0)
    with pytest.raises(TandemError, match="reasoning-gym rows only"):
        reasoning_gym_reward(RewardInput("1", "1", "", "openai/gsm8k", {}))
