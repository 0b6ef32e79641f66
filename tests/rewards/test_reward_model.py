"""The reward-model scorer on a tiny random-init sequence classifier built in code (no hub)."""

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForSequenceClassification

from core.errors import TandemError
from core.models.tokenizer import build_byte_tokenizer
from core.rewards.base import RewardInput
from core.rewards.reward_model import RewardModelScorer


def tiny_classifier(num_labels=1):
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, num_labels=num_labels,
    )
    return Qwen2ForSequenceClassification(config)


def test_scores_one_float_per_sample_independent_of_batching():
    tokenizer = build_byte_tokenizer()
    model = tiny_classifier()
    inputs = [
        RewardInput(response="#### 7", prompt="Q: 3+4? A: "),
        RewardInput(response="I do not know, sorry about that", prompt="Q: 3+4? A: "),
        RewardInput(response="7", prompt="Q: 3+4? A: "),
    ]
    batched = RewardModelScorer(model, tokenizer, batch_size=3).score(inputs)
    one_by_one = RewardModelScorer(model, tokenizer, batch_size=1).score(inputs)
    assert batched.scores.shape == (3,) and batched.errors == 0
    # right padding must not change a row's score: the classifier reads each row's last real token
    torch.testing.assert_close(batched.scores, one_by_one.scores, atol=1e-5, rtol=1e-5)
    assert batched.scores.unique().numel() == 3


def test_rejects_a_multi_label_model():
    with pytest.raises(TandemError, match="num_labels=1"):
        RewardModelScorer(tiny_classifier(num_labels=2), build_byte_tokenizer())


def test_from_pretrained_roundtrip(tmp_path):
    tiny_classifier().save_pretrained(tmp_path)
    build_byte_tokenizer().save_pretrained(tmp_path)
    scorer = RewardModelScorer.from_pretrained(str(tmp_path))
    assert scorer.score([RewardInput(response="7", prompt="Q")]).scores.shape == (1,)
    with pytest.raises(TandemError, match="cannot load reward model"):
        RewardModelScorer.from_pretrained(str(tmp_path / "missing"))
