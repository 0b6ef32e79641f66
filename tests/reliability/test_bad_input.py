"""Bad input gives one line naming the culprit: broken model directories, unreadable data files,
reward modules that fail to import, and a vLLM engine asked for where vLLM is missing."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
from omegaconf import OmegaConf

from core.data.rl_dataset import read_records
from core.errors import TandemError
from core.rewards.scoring import _import_function
from core.trainer.setup import load_policy


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    return copy


def _cfg(path):
    return OmegaConf.create({"path": str(path), "dtype": "float32", "gradient_checkpointing": False})


@pytest.mark.parametrize("damage, what", [
    ("truncate", "weights"), ("empty", "weights"), ("no_tokenizer", "tokenizer"), ("unknown_type", "weights"),
])
def test_broken_model_dirs_are_named(model_copy, damage, what):
    import torch

    weights = model_copy / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "empty":
        weights.write_bytes(b"")
    elif damage == "no_tokenizer":
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"):
            (model_copy / name).unlink(missing_ok=True)
    else:
        config = json.loads((model_copy / "config.json").read_text())
        (model_copy / "config.json").write_text(json.dumps({**config, "model_type": "no_such_arch"}))
    with pytest.raises(TandemError, match=f"model.path {model_copy}: cannot load its {what}"):
        load_policy(_cfg(model_copy), torch.device("cpu"))


@pytest.mark.parametrize("change, message", [
    ({"intermediate_size": 96}, "its config.json does not match its weights"),  # shapes the weights do not have
    ({"num_hidden_layers": 3}, "must be equal to the number of `layer_types`"),  # a config contradicting itself
])
def test_a_config_that_does_not_fit_its_weights_is_named(model_copy, change, message):
    import torch

    config = json.loads((model_copy / "config.json").read_text())
    (model_copy / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(TandemError, match=f"model.path {model_copy}: .*{message}"):
        load_policy(_cfg(model_copy), torch.device("cpu"))


def test_unreadable_data_files_are_named(tmp_path):
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    with pytest.raises(TandemError, match="empty.parquet is empty"):
        read_records(empty)
    fake = tmp_path / "fake.parquet"
    fake.write_text("prompt,answer\n1,2\n")
    with pytest.raises(TandemError, match="fake.parquet is not a readable parquet file"):
        read_records(fake)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"a": 1}\n{"b": "caf\xe9"}\n')
    with pytest.raises(TandemError, match="latin.jsonl: line 2 is not UTF-8 text"):
        read_records(latin)


def test_a_data_file_without_rows_is_named(tmp_path, tiny_tokenizer):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from core.data.rl_dataset import load_rl_dataset

    path = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"prompt": pa.array([], pa.string())}), path)
    with pytest.raises(TandemError, match="empty.parquet holds no rows"):
        load_rl_dataset([str(path)], tiny_tokenizer, 64)


def test_rows_without_ground_truth_are_named(tiny_tokenizer):
    from core.data.rl_dataset import rl_dataset_from_rows

    row = {"prompt": "2+2?", "data_source": "x", "reward_model": {"style": "rule"}}
    with pytest.raises(TandemError, match="rows: row 0: reward_model has no 'ground_truth'"):
        rl_dataset_from_rows([row], tiny_tokenizer, 64)
    model_scored = {**row, "reward_model": {"style": "model"}}  # a reward model needs none
    assert len(rl_dataset_from_rows([model_scored], tiny_tokenizer, 64)) == 1


@pytest.mark.parametrize("body, message", [
    ("def score(:\n", "syntax error"),
    ("raise RuntimeError('no config')\n", "raised RuntimeError: no config"),
    ("import sys\nsys.exit(3)\n", "raised SystemExit: 3"),
])
def test_reward_modules_that_fail_to_import(tmp_path, monkeypatch, body, message):
    name = f"bad_reward_{abs(hash(body))}"
    (tmp_path / f"{name}.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TandemError, match=message):
        _import_function(f"{name}:score")
    sys.modules.pop(name, None)


def test_vllm_engine_without_vllm_is_named(monkeypatch):
    from core.rollout.vllm_engine import build_llm

    monkeypatch.setitem(sys.modules, "vllm", None)  # as if not installed

    with pytest.raises(TandemError, match="backend.engine=vllm needs vLLM"):
        build_llm({}, multiprocess=False)


def test_disk_full_is_one_line_naming_the_path(capsys):
    import errno

    from core.errors import exit_on_user_error

    @exit_on_user_error
    def writes():
        raise OSError(errno.ENOSPC, "No space left on device", "/runs/x/checkpoints/global_step_3/dcp")

    with pytest.raises(SystemExit) as info:
        writes()
    assert info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "tandem: error: no space left on the device writing /runs/x/checkpoints/global_step_3/dcp; free some and resume"
    )
