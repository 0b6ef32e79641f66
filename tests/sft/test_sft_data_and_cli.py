"""SFT data files (messages or prompt/response columns) and `python -m sft.main` as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from core.errors import TandemError
from sft.loop import train
from sft_fakes import tiny_run

CONVERSATIONS = [
    {"messages": [{"role": "user", "content": "reverse: abc"}, {"role": "assistant", "content": "cba"}],
     "data_source": "letters", "reward_model": {"ground_truth": "cba"}},
    {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "reverse: de"},
                  {"role": "assistant", "content": "ed"}, {"role": "user", "content": "reverse: fgh"},
                  {"role": "assistant", "content": "hgf"}]},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_trains_and_validates_on_messages_jsonl_and_prompt_response_parquet(tmp_path, fake_backend):
    import pyarrow as pa
    import pyarrow.parquet as pq

    train_file = write_jsonl(tmp_path / "train.jsonl", CONVERSATIONS * 4)
    val_file = tmp_path / "val.parquet"
    pq.write_table(pa.Table.from_pylist([{"prompt": "reverse: xy", "response": "yx"}] * 3), val_file)
    summary = train(tiny_run(tmp_path / "run", "data.task=file", f"data.train_files=[{train_file}]",
                             f"data.val_files=[{val_file}]", "data.reward_fn=reverse_letters"))
    assert summary["validations"] == 3 and 0.0 <= summary["val/reward_end"] <= 1.0
    records = [json.loads(line) for line in (tmp_path / "run/validation/step_000004.jsonl").read_text().splitlines()]
    assert [r["reference"] for r in records] == ["yx"] * 3


def test_a_row_without_usable_columns_is_named(tmp_path, fake_backend):
    bad = write_jsonl(tmp_path / "bad.jsonl", [CONVERSATIONS[0], {"question": "hi"}])
    with pytest.raises(TandemError, match=r"bad.jsonl: row 1: needs a 'messages' column or both 'prompt' and 'response'"):
        train(tiny_run(tmp_path / "run", "data.task=file", f"data.train_files=[{bad}]", f"data.val_files=[{bad}]"))


def run_sft(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "sft.main", *args], capture_output=True, text=True, timeout=120,
                          env=env, cwd=cwd)


def test_cli_auto_detects_the_backend_and_reuses_core_groups(tmp_path):
    result = run_sft("--cfg", "job", "model=tiny", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "name: cpu" in result.stdout and "path: builtin:tiny-qwen2" in result.stdout
    assert "temperature: 0.8" in result.stdout and list(tmp_path.iterdir()) == []


def test_cli_unknown_key_and_unknown_backend_fail_in_one_line(tmp_path):
    result = run_sft("+backend=tpu", cwd=tmp_path)
    assert result.returncode == 2 and "unknown backend 'tpu'" in result.stderr and "Traceback" not in result.stderr
    result = run_sft("+backend=cpu", "validation.no_such_key=1", cwd=tmp_path)
    assert result.returncode != 0 and "no_such_key" in result.stderr
    result = run_sft("+backend=cpu", "trainer.micro_batch_tokens=0", cwd=tmp_path)  # was one silent whole-batch pass
    assert result.returncode == 2 and "trainer.micro_batch_tokens=0 is out of range" in result.stderr


def test_a_reasoning_gym_task_becomes_question_answer_chats_with_rl_s_prompts_and_reward(tmp_path, fake_backend):
    pytest.importorskip("reasoning_gym")
    from core.data.reasoning_gym import train_and_validation_rows

    run = tiny_run(tmp_path / "run", "data.task=reasoning_gym", "+data.reasoning_gym.datasets={spell_backward: {}}",
                   "data.reasoning_gym.train_size=16", "data.val_size=4", "data.reward_fn=reasoning_gym",
                   "data.max_length=512", "data.max_prompt_length=448")  # byte tokens: a character each
    summary = train(run)
    assert summary["validations"] == 3 and 0.0 <= summary["val/reward_end"] <= 1.0
    _, rl_val = train_and_validation_rows(run.data.reasoning_gym, 4, run.data.seed)
    records = [json.loads(line) for line in (tmp_path / "run/validation/step_000004.jsonl").read_text().splitlines()]
    assert [r["reference"] for r in records] == [row["reward_model"]["ground_truth"] for row in rl_val]
    assert all(row["prompt"][0]["content"] in r["prompt"] for r, row in zip(records, rl_val))


def test_a_response_template_writes_tool_demonstrations_from_the_entry(tmp_path, fake_backend):
    pytest.importorskip("reasoning_gym")
    from core.models.builtin import resolve_model_path
    from sft.dataset import load_data

    run = tiny_run(tmp_path / "run", "data.task=reasoning_gym", "data.reasoning_gym.train_size=4", "data.val_size=2",
                   "+data.reasoning_gym.datasets={basic_arithmetic: {min_terms: 2, max_terms: 2}}",
                   "data.response_template='<calculator>{metadata[expression]}</calculator><result>{answer}</result> {answer}'",
                   "data.max_length=512", "data.max_prompt_length=448")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(run.model.path))
    train_examples, _ = load_data(run, tokenizer)
    entry = json.loads(train_examples[0].extra_info["entry"])  # e.g. expression "4 + 7", answer "11"
    assert train_examples[0].reference == (
        f"<calculator>{entry['metadata']['expression']}</calculator><result>{entry['answer']}</result> {entry['answer']}"
    )
    assert train_examples[0].ground_truth == entry["answer"]  # the reward still scores the answer alone

    bad = tiny_run(tmp_path / "bad", "data.task=reasoning_gym", "data.reasoning_gym.train_size=4", "data.val_size=2",
                   "+data.reasoning_gym.datasets={basic_arithmetic: {}}", "data.response_template='{metadata[formula]}'")
    with pytest.raises(TandemError, match=r"data.response_template='\{metadata\[formula\]\}' cannot be filled .*expression"):
        load_data(bad, tokenizer)


@pytest.mark.parametrize("sft_preset, rl_preset", [
    ("smollm2_calculator_warmup", "smollm2_calculator"),
    ("smollm2_spell_backward_sft", "smollm2_spell_backward"),
])
def test_each_sft_preset_trains_on_its_rl_preset_s_own_prompts_and_reward(sft_preset, rl_preset):
    from hydra import compose, initialize_config_module

    from core.config.schema import register_schemas
    from sft_fakes import compose_sft

    sft = compose_sft(f"+experiment={sft_preset}")
    register_schemas()
    with initialize_config_module(config_module="core.conf", version_base=None):
        rl = compose("config", overrides=[f"+experiment={rl_preset}"])
    assert sft.data.reasoning_gym.instruction == rl.data.reasoning_gym.instruction
    assert sft.data.reasoning_gym.datasets == rl.data.reasoning_gym.datasets
    assert sft.data.reward_fn == rl.reward.reward_fn and sft.model.path == rl.model.path
