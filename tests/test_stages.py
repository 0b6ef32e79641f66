"""A step's batch stages (core.rl.stages) return new batches and never write into the one they are given, so a
batch held back for later training (asynchronous rollouts) is what its stage made."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from core.algorithms.kl import make_kl_controller
from core.algorithms.spec import AlgorithmSpec
from core.config.schema import AlgorithmConfig
from core.rl.experience import Experience
from core.rl.stages import scored_batch, with_advantages, with_logprobs
from core.rollout.base import RolloutOutput
from core.trainer.batch import AdvantageBatch, LogprobBatch, ScoredBatch


class FixedWorkers:
    """Log-probs of -1 (behaviour) and -2 (reference), values 0.5, everywhere; counts the behaviour passes."""

    behaviour_passes = 0

    def compute_logprobs(self, batch):
        self.behaviour_passes += 1
        return torch.full(batch.response_mask.shape, -1.0), torch.ones(batch.response_mask.shape)

    def compute_ref_logprobs(self, batch):
        return torch.full(batch.response_mask.shape, -2.0)

    def compute_values(self, batch):
        return torch.full(batch.response_mask.shape, 0.5)


def experience() -> Experience:
    # one prompt [5, 6], two responses: [8, 9] (score 1) and [4] (score 0)
    mask = torch.tensor([[True, True], [True, False]])
    output = RolloutOutput([[5, 6], [5, 6]], torch.tensor([[8, 9], [4, 0]]), None, mask, torch.tensor([0, 0]))
    return Experience(output, torch.tensor([1.0, 0.0]), None, {})


def algorithm(**keys):
    cfg = OmegaConf.merge(OmegaConf.structured(AlgorithmConfig), keys)
    return cfg, AlgorithmSpec.from_config(cfg, 2)


def test_each_stage_returns_a_new_batch_and_leaves_its_input_as_it_was():
    algo, spec = algorithm(adv_estimator="grpo", kl_placement="reward", kl_coef=0.1, kl_estimator="k1")
    scored = scored_batch(experience(), pad_token_id=0, on_policy=False)
    # the score sits on each response's last token: column 1 of row 0, column 0 of row 1
    assert scored.token_rewards.tolist() == [[0.0, 1.0], [0.0, 0.0]]
    logprobs, entropy = with_logprobs(scored, FixedWorkers(), spec)
    assert type(scored) is ScoredBatch and not hasattr(scored, "old_logprobs") and entropy.shape == (2, 2)
    trained, metrics = with_advantages(logprobs, algo, spec, make_kl_controller(0.1, None, 10_000), None)
    assert type(logprobs) is LogprobBatch and logprobs.token_rewards.tolist() == [[0.0, 1.0], [0.0, 0.0]]
    assert type(trained) is AdvantageBatch and trained.select(torch.tensor([1])).rows == 1  # a sub-batch keeps its stage
    # k1 KL = -1 - -2 = 1 a token, 0.1 of it off every real token's reward
    assert torch.allclose(trained.token_rewards, torch.tensor([[-0.1, 0.9], [-0.1, 0.0]]))
    assert metrics == {"actor/kl_coef": 0.1} and trained.advantages is not None


def test_an_on_policy_batch_gets_no_behaviour_pass():
    _, spec = algorithm(adv_estimator="grpo", kl_placement="none")
    workers = FixedWorkers()
    batch, entropy = with_logprobs(scored_batch(experience(), 0, on_policy=True), workers, spec)
    assert workers.behaviour_passes == 0 and batch.old_logprobs is None and entropy is None


def test_the_update_refuses_a_batch_of_an_earlier_stage(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from core.config.schema import TrainerConfig
    from core.trainer.actor import Actor

    algo, spec = algorithm()
    trainer = OmegaConf.merge(OmegaConf.structured(TrainerConfig), {"remove_padding": False})
    actor = Actor(AutoModelForCausalLM.from_pretrained(tiny_model_dir), algo, trainer, spec)
    with pytest.raises(TypeError, match="the update trains on an AdvantageBatch .*, not a ScoredBatch"):
        actor.update(scored_batch(experience(), 0, on_policy=False))
