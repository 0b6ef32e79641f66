"""Evaluation sets are disjoint from training and validation by construction, and the shifted set is harder."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("reasoning_gym")

from omegaconf import OmegaConf  # noqa: E402

from core.config.schema import DataConfig, EvalConfig  # noqa: E402
from core.errors import TandemError  # noqa: E402
from core.eval.sets import eval_sets  # noqa: E402
from core.trainer.setup import make_prompt_source  # noqa: E402

ARITHMETIC = {"basic_arithmetic": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}}


def configs(**eval_keys):
    data = OmegaConf.structured(DataConfig(task="reasoning_gym", val_size=50, max_prompt_length=128))
    data.reasoning_gym.datasets = ARITHMETIC
    data.reasoning_gym.train_size = 300
    return data, OmegaConf.merge(OmegaConf.structured(EvalConfig()), {"size": 120, **eval_keys})


def question(sample) -> str:
    return sample.extra_info["entry"]


def test_heldout_shares_no_question_with_training_or_validation(tiny_tokenizer):
    data, eval_cfg = configs(shifted={"basic_arithmetic": {"min_terms": 3, "max_terms": 3}})
    train, val = make_prompt_source(data, tiny_tokenizer)
    heldout, shifted = eval_sets(data, eval_cfg, tiny_tokenizer)
    seen = {s.prompt_text for s in train.dataset.samples} | {s.prompt_text for s in val.samples}
    texts = [s.prompt_text for s in heldout.dataset.samples]
    assert heldout.name == "heldout" and not seen & set(texts) and len(set(texts)) == len(texts)
    # 1-digit, 2-term questions repeat a lot: the drawn set lost its seen ones and its repeats
    assert heldout.dropped > 0 and len(texts) + heldout.dropped == 120
    # the shifted set: three terms (two operators) in every question, none of them seen either
    assert shifted.name == "shifted" and not seen & {s.prompt_text for s in shifted.dataset.samples}
    operators = [len(re.findall(r" [-+*/] ", s.extra_info["entry"].split('"question": "')[1].split('"')[0]))
                 for s in shifted.dataset.samples]
    assert set(operators) == {2}


def test_the_same_config_gives_the_same_sets(tiny_tokenizer):
    data, eval_cfg = configs()
    first = [s.prompt_ids for s in eval_sets(data, eval_cfg, tiny_tokenizer)[0].dataset.samples]
    assert first == [s.prompt_ids for s in eval_sets(data, eval_cfg, tiny_tokenizer)[0].dataset.samples]
    assert len(eval_sets(data, eval_cfg, tiny_tokenizer)) == 1  # no shifted set unless eval.shifted says how


def test_a_shifted_dataset_the_task_lacks_is_named(tiny_tokenizer):
    data, eval_cfg = configs(shifted={"chain_sum": {"max_terms": 4}})
    with pytest.raises(TandemError, match="eval.shifted names chain_sum"):
        eval_sets(data, eval_cfg, tiny_tokenizer)


def test_file_task_heldout_drops_prompts_training_has(tiny_tokenizer, tmp_path):
    import json

    def write(name, questions):
        path = tmp_path / name
        path.write_text("\n".join(json.dumps({"prompt": q, "data_source": "s", "reward_model": {"ground_truth": "1"}})
                                  for q in questions))
        return str(path)

    data, eval_cfg = configs()
    data.task, data.train_files, data.val_files = "file", [write("t.jsonl", ["a", "b"])], [write("v.jsonl", ["b", "c", "c"])]
    (heldout,) = eval_sets(data, eval_cfg, tiny_tokenizer)
    assert [s.prompt_text for s in heldout.dataset.samples] == [
        s.prompt_text for s in make_prompt_source(data, tiny_tokenizer)[1].samples][1:2]  # only "c", once
    assert heldout.dropped == 2
