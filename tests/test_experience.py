"""One step's experience from its typed settings (core.rl.experience), on a fake engine and scorer whose
numbers are laid out by hand."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf

from core.algorithms.spec import AlgorithmSpec
from core.config.schema import AlgorithmConfig
from core.data.base import PromptItem
from core.rewards.scoring import RewardBatch
from core.rl.experience import ExperienceSettings, collect_experience
from core.rollout.base import RolloutOutput, SamplingParams


class LengthsEngine:
    """Answers every prompt with responses of the given lengths, cycled (token 7, padded with 0)."""

    def __init__(self, lengths: list[int]):
        self.lengths, self.calls = lengths, []

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> RolloutOutput:
        self.calls.append((len(prompts), params.n))
        rows = len(prompts) * params.n
        lengths = [self.lengths[i % len(self.lengths)] for i in range(rows)]
        width = max(lengths)
        mask = torch.tensor([[c < n for c in range(width)] for n in lengths])
        return RolloutOutput([p for p in prompts for _ in range(params.n)], torch.where(mask, 7, 0), None, mask,
                             torch.arange(len(prompts)).repeat_interleave(params.n))


class OnesScorer:
    def score(self, samples) -> RewardBatch:
        return RewardBatch(torch.ones(len(samples)), errors=0)


class Prompts:
    def next_batch(self, size: int) -> list[PromptItem]:
        return [PromptItem([1, 2], ground_truth=str(i)) for i in range(size)]


def spec() -> AlgorithmSpec:
    return AlgorithmSpec.from_config(OmegaConf.structured(AlgorithmConfig), 4)


def test_the_overlong_penalty_ramps_over_the_buffer_before_max_tokens(tiny_tokenizer):
    # max_tokens 4, buffer 2: length 2 -> 0; 3 -> -(3 - 2) / 2 = -0.5; 4 -> -(4 - 2) / 2 = -1.0
    settings = ExperienceSettings(prompt_batch_size=1, max_tokens=4, overlong_buffer=2, overlong_penalty=1.0)
    experience = collect_experience(LengthsEngine([2, 3, 4]), Prompts(), OnesScorer(), tiny_tokenizer,
                                    SamplingParams(n=3, max_tokens=4), settings, spec())
    assert experience.scores.tolist() == [1.0, 0.5, 0.0]
    assert experience.metrics["reward/raw_mean"] == 1.0 and experience.metrics["dapo/overlong_penalty"] == -0.5


def test_expanded_prompts_go_n_times_with_n_1_and_keep_their_groups(tiny_tokenizer):
    engine = LengthsEngine([1])
    settings = ExperienceSettings(prompt_batch_size=2, max_tokens=4, expand_prompts=True)
    experience = collect_experience(engine, Prompts(), OnesScorer(), tiny_tokenizer,
                                    SamplingParams(n=3, max_tokens=4), settings, spec())
    assert engine.calls == [(6, 1)]
    assert experience.output.group_ids.tolist() == [0, 0, 0, 1, 1, 1]


def test_settings_read_their_keys_from_the_data_rollout_and_algorithm_groups(compose_config):
    cfg = compose_config("+backend=cpu", "data.prompt_batch_size=5", "rollout.max_tokens=9",
                         "algorithm.overlong_buffer=3", "algorithm.dynamic_sampling=true")
    settings = ExperienceSettings.from_config(cfg)
    assert (settings.prompt_batch_size, settings.max_tokens, settings.overlong_buffer) == (5, 9, 3)
    assert settings.dynamic_sampling and not settings.expand_prompts
