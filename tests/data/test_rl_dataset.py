"""Reading RL prompt files, applying the chat template, over-long prompts, and the resumable sampler."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.data.rl_dataset import EpochSampler, load_rl_dataset
from core.errors import TandemError
from core.models.tokenizer import build_byte_tokenizer

FIXTURES = "tests/fixtures/gsm8k"


@pytest.fixture(scope="module")
def tokenizer():
    return build_byte_tokenizer()


def row(content="What is 3 + 4?", truth="7", **overrides):
    base = {
        "data_source": "openai/gsm8k",
        "prompt": [{"role": "user", "content": content}],
        "reward_model": {"style": "rule", "ground_truth": truth},
        "extra_info": {"index": 0},
    }
    base.update(overrides)
    return base


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_reads_the_prepared_gsm8k_fixture(tokenizer):
    dataset = load_rl_dataset([f"{FIXTURES}/train.parquet"], tokenizer, max_prompt_length=512)
    assert len(dataset) == 8 and dataset.num_filtered == 0
    first = dataset[0]
    assert first.data_source == "openai/gsm8k" and first.ground_truth == "7"
    # ChatML applied with the generation prompt, ids and text agree
    assert first.prompt_text.startswith("<|im_start|>user\nTom has 3 apples")
    assert first.prompt_text.endswith("<|im_start|>assistant\n")
    assert tokenizer.decode(first.prompt_ids) == first.prompt_text
    assert first.extra_info["split"] == "train"


def test_jsonl_and_parquet_read_alike(tokenizer, tmp_path):
    rows = [row(), row("Ten minus two?", "8")]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet")
    from_parquet = load_rl_dataset([str(tmp_path / "p.parquet")], tokenizer, 256)
    from_jsonl = load_rl_dataset([write_jsonl(tmp_path / "p.jsonl", rows)], tokenizer, 256)
    assert from_parquet.samples == from_jsonl.samples


def test_a_plain_string_prompt_is_one_user_message(tokenizer, tmp_path):
    dataset = load_rl_dataset([write_jsonl(tmp_path / "s.jsonl", [row(prompt="Hi?")])], tokenizer, 256)
    assert dataset[0].prompt_text == "<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n"


def test_overlong_prompts_are_filtered_or_left_truncated(tokenizer, tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [row("short"), row("long " * 40)])
    limit = 40  # "short" renders to 38 byte tokens with ChatML; the long one to ~230
    filtered = load_rl_dataset([path], tokenizer, limit)
    assert len(filtered) == 1 and filtered.num_filtered == 1
    truncated = load_rl_dataset([path], tokenizer, limit, filter_overlong=False)
    assert len(truncated) == 2 and len(truncated[1].prompt_ids) == limit
    assert truncated[1].prompt_text.endswith("<|im_start|>assistant\n")  # the end is kept
    with pytest.raises(TandemError, match="all 2 prompts .* longer than data.max_prompt_length=5"):
        load_rl_dataset([path], tokenizer, 5)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"prompt": None}, "row 0: missing column 'prompt'"),
        ({"data_source": None}, "row 0: missing column 'data_source'"),
        ({"prompt": [{"role": "user"}]}, "column 'prompt' must be a list of"),
        ({"prompt": 3}, "column 'prompt' must be a list of"),
        ({"data_source": 3}, "column 'data_source' must be a string, got int"),
        ({"reward_model": "7"}, "column 'reward_model' must be a dict"),
        ({"extra_info": [1]}, "column 'extra_info' must be a dict, got list"),
    ],
)
def test_bad_columns_name_file_and_column(tokenizer, tmp_path, bad, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [row(**bad)])
    with pytest.raises(TandemError, match=f"bad.jsonl: {message}" if "row 0" in message else message):
        load_rl_dataset([path], tokenizer, 256)


def test_file_errors(tokenizer, tmp_path):
    with pytest.raises(TandemError, match="data file not found: .*nope.parquet"):
        load_rl_dataset([str(tmp_path / "nope.parquet")], tokenizer, 256)
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(TandemError, match="unsupported data file type '.csv'"):
        load_rl_dataset([str(tmp_path / "x.csv")], tokenizer, 256)
    (tmp_path / "broken.jsonl").write_text('{"a": 1}\n{oops\n')
    with pytest.raises(TandemError, match="broken.jsonl: line 2 is not valid JSON"):
        load_rl_dataset([str(tmp_path / "broken.jsonl")], tokenizer, 256)
    with pytest.raises(TandemError, match="no data files"):
        load_rl_dataset([], tokenizer, 256)


def test_sampler_visits_every_item_once_per_epoch_and_reshuffles():
    sampler = EpochSampler(5, seed=1)
    first, second = sampler.next_indices(5), sampler.next_indices(5)
    assert sorted(first) == sorted(second) == [0, 1, 2, 3, 4]
    assert first != second
    assert sampler.state_dict()["epoch"] == 2


def test_sampler_resumes_mid_epoch_exactly():
    original = EpochSampler(7, seed=3)
    original.next_indices(4)
    state = original.state_dict()
    expected = original.next_indices(9)  # crosses into the next epoch
    resumed = EpochSampler(7, seed=3)
    resumed.load_state_dict(state)
    assert resumed.next_indices(9) == expected
    with pytest.raises(TandemError, match="checkpoint saw 7 prompts, the dataset now has 8"):
        EpochSampler(8).load_state_dict(state)


def test_sampler_without_shuffle_is_in_order():
    assert EpochSampler(3, shuffle=False).next_indices(5) == [0, 1, 2, 0, 1]


def test_a_plain_prompt_template_for_base_models(tiny_tokenizer, tmp_path):
    """A base model has no chat template: the user text fills data.prompt_template, tokenised as plain text."""
    path = write_jsonl(tmp_path / "p.jsonl", [row(prompt="What is 2+3?")])
    dataset = load_rl_dataset([path], tiny_tokenizer, 256, prompt_template="Question: {content}\nAnswer:")
    assert dataset.samples[0].prompt_ids == tiny_tokenizer("Question: What is 2+3?\nAnswer:")["input_ids"]
    assert dataset.samples[0].prompt_text == "Question: What is 2+3?\nAnswer:"


def test_a_tokenizer_without_chat_template_names_the_prompt_template_key(tiny_tokenizer, tmp_path):
    import copy

    plain = copy.deepcopy(tiny_tokenizer)
    plain.chat_template = None
    with pytest.raises(TandemError, match="data.prompt_template="):
        load_rl_dataset([write_jsonl(tmp_path / "p.jsonl", [row()])], plain, 256)


def test_few_shot_examples_come_before_every_question(tiny_tokenizer, tmp_path):
    """data.few_shot: earlier chat turns under the chat template; filled templates with their answers without."""
    path = write_jsonl(tmp_path / "d.jsonl", [row(prompt="Calculate 5 - 3.")])
    shot = [{"user": "Calculate 12 + 7.", "assistant": "19"}]
    plain = load_rl_dataset([path], tiny_tokenizer, 256, prompt_template="Question: {content}\nAnswer:", few_shot=shot)
    assert plain.samples[0].prompt_text.endswith("Question: Calculate 12 + 7.\nAnswer: 19\n\n"
                                                 "Question: Calculate 5 - 3.\nAnswer:")
    chat = load_rl_dataset([path], tiny_tokenizer, 256, few_shot=shot).samples[0].prompt_text
    assert chat.index("Calculate 12 + 7.") < chat.index("19") < chat.index("Calculate 5 - 3.")
