"""On-policy updates reuse their own forward as the behaviour log-probs: the same step as with the
separate log-prob pass (loss, weights after the step), and the log-probs it hands back are that pass's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from core.algorithms.spec import AlgorithmSpec
from core.config.schema import AlgorithmConfig
from core.trainer.actor import Actor, behaviour_logprobs_from_update

sys.path.insert(0, str(Path(__file__).parent / "distributed"))
from dist_utils import random_batch  # noqa: E402

ALGO = OmegaConf.merge(OmegaConf.structured(AlgorithmConfig), dict(  # the schema's defaults for the rest
    policy_loss="ppo_clip", loss_agg_mode="token-mean", clip_ratio_low=0.2, clip_ratio_high=0.28,
    kl_placement="none", kl_coef=0.0, entropy_coef=0.0,
))
TRAINER = OmegaConf.create(dict(
    lr=1e-2, weight_decay=0.0, warmup_steps=0, grad_clip=1e9, ppo_epochs=1, mini_batches=1,
    micro_batch_size=3, max_tokens_per_gpu=None, remove_padding=False, reuse_on_policy_logprobs=True,
))


def _actor(model_dir, policy_loss="ppo_clip"):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    algo = OmegaConf.merge(ALGO, {"policy_loss": policy_loss})
    return Actor(model, algo, TRAINER, AlgorithmSpec.from_config(algo, 5), temperature=0.7)


@pytest.mark.parametrize("policy_loss", ["ppo_clip", "gspo"])
def test_reused_logprobs_give_the_step_of_the_separate_pass(tiny_model_dir, policy_loss):
    separate, reused = _actor(tiny_model_dir, policy_loss), _actor(tiny_model_dir, policy_loss)
    batch = random_batch(rows=8, seed=3)
    batch.old_logprobs, entropy = separate.compute_logprobs(batch)

    torch.manual_seed(1)  # the mini-batch shuffle draws the same permutation in both
    expected = separate.update(batch)
    torch.manual_seed(1)
    got = reused.update(_without_old(batch))

    torch.testing.assert_close(got.logprobs, batch.old_logprobs, rtol=0, atol=1e-5)
    torch.testing.assert_close(got.entropy, entropy, rtol=0, atol=1e-5)
    assert got.metrics["actor/pg_loss"] == pytest.approx(expected.metrics["actor/pg_loss"], abs=1e-6)
    assert got.metrics["actor/grad_norm"] == pytest.approx(expected.metrics["actor/grad_norm"], rel=1e-5)
    for (name, a), (_, b) in zip(separate.model.named_parameters(), reused.model.named_parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    assert expected.logprobs is None  # a batch that came with old_logprobs gets none back


def _without_old(batch):
    batch = batch.select(torch.arange(batch.rows))
    batch.old_logprobs, batch.on_policy = None, True
    return batch


def test_only_one_epoch_of_one_mini_batch_without_reward_kl_reuses():
    spec = AlgorithmSpec.from_config(ALGO, 5)
    assert behaviour_logprobs_from_update(TRAINER, spec)
    for override in ({"ppo_epochs": 2}, {"mini_batches": 2}, {"reuse_on_policy_logprobs": False}):
        assert not behaviour_logprobs_from_update(OmegaConf.merge(TRAINER, override), spec)
    reward_kl = AlgorithmSpec.from_config(OmegaConf.merge(ALGO, {"kl_placement": "reward", "kl_coef": 0.1}), 5)
    assert not behaviour_logprobs_from_update(TRAINER, reward_kl)


def test_a_pass_without_entropies_gives_the_same_logprobs(tiny_model_dir):
    """The reference pass asks for no entropies (nothing reads them): the same log-probs, bit for bit."""
    actor = _actor(tiny_model_dir)
    batch = random_batch(rows=6, seed=2)
    with_entropy, entropy = actor.compute_logprobs(batch)
    without, none = actor.compute_logprobs(batch, with_entropy=False)
    assert none is None and entropy is not None
    assert torch.equal(without, with_entropy)
