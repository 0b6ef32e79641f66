"""validate(): one batched generation over the validation set, scored per data source."""

import pytest
import torch

from core.data.base import PromptItem
from core.data.rl_dataset import RLDataset
from core.models.tokenizer import build_byte_tokenizer
from core.rewards.builtin import by_data_source
from core.rewards.scoring import RewardScorer
from core.rl.evaluate import validate
from core.rollout.base import RolloutOutput, SamplingParams, pad_responses


class ScriptedEngine:
    """Answers each prompt with scripted texts, one per sample, and records its calls."""

    def __init__(self, tokenizer, answers: dict[str, list[str]]):
        self.tokenizer = tokenizer
        self.answers = answers  # prompt text -> response text of sample j
        self.calls = 0

    def generate(self, prompts, params):
        self.calls += 1
        rows, groups = [], []
        for index, prompt in enumerate(prompts):
            for j in range(params.n):
                text = self.answers[self.tokenizer.decode(prompt)][j]
                rows.append(self.tokenizer.encode(text) + [self.tokenizer.eos_token_id])
                groups.append(index)
        ids, logprobs, mask = pad_responses(rows, [[0.0] * len(r) for r in rows], self.tokenizer.pad_token_id)
        repeated = [prompts[g] for g in groups]
        return RolloutOutput(repeated, ids, logprobs, mask, torch.tensor(groups), torch.ones(len(rows), dtype=torch.bool))


@pytest.fixture
def tokenizer():
    return build_byte_tokenizer()


def sample(tokenizer, text, source, truth):
    ids = tokenizer.encode(text)
    return PromptItem(ids, text, source, truth)


def test_reward_per_data_source(tokenizer):
    dataset = RLDataset(
        [
            sample(tokenizer, "gsm a", "openai/gsm8k", "7"),
            sample(tokenizer, "gsm b", "openai/gsm8k", "12"),
            sample(tokenizer, "math a", "hendrycks/math", "\\frac{1}{2}"),
        ]
    )
    engine = ScriptedEngine(
        tokenizer,
        {
            "gsm a": ["#### 7", "#### 8"],  # 1 of 2 right
            "gsm b": ["#### 3", "#### 4"],  # 0 of 2
            "math a": ["\\boxed{0.5}", "\\boxed{\\dfrac12}"],  # 2 of 2
        },
    )
    scorer = RewardScorer(by_data_source, workers=1)
    metrics = validate(engine, dataset, scorer, SamplingParams(n=2, temperature=0.0), tokenizer)
    assert engine.calls == 1
    assert metrics["val/openai/gsm8k/reward"] == 0.25  # (1 + 0 + 0 + 0) / 4
    assert metrics["val/hendrycks/math/reward"] == 1.0
    assert metrics["val/reward"] == 0.5  # 3 right of 6
    assert metrics["val/openai/gsm8k/best_of_n"] == 0.5  # prompt a solved, prompt b not
    assert metrics["val/hendrycks/math/best_of_n"] == 1.0
    assert metrics["val/reward/errors"] == 0.0
    # one byte token per character plus EOS: "#### 7" -> 7, "\boxed{0.5}" -> 12, "\boxed{\dfrac12}" -> 17
    lengths = [7, 7, 7, 7, 12, 17]
    assert metrics["val/response_length/mean"] == pytest.approx(sum(lengths) / 6)


def test_single_sample_has_no_best_of_n(tokenizer):
    dataset = RLDataset([sample(tokenizer, "q", "openai/gsm8k", "1")])
    engine = ScriptedEngine(tokenizer, {"q": ["#### 1"]})
    metrics = validate(engine, dataset, RewardScorer(by_data_source, workers=1), SamplingParams(n=1), tokenizer)
    assert metrics["val/reward"] == 1.0
    assert not any(key.endswith("best_of_n") for key in metrics)
