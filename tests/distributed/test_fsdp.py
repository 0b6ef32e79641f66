"""FSDP2 on 2 gloo ranks (token-balanced rows, token-budget packed micro-batches) gives the same
loss and gradients as one process on the whole batch in one micro-batch."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.multiprocessing as mp
from omegaconf import OmegaConf

from core.algorithms.spec import AlgorithmSpec
from core.config.schema import AlgorithmConfig
from core.distributed.batching import data_parallel_rows, row_lengths
from core.trainer.actor import Actor
from dist_utils import free_port, grouped_batch, init_gloo, random_batch

pytestmark = pytest.mark.timeout(180)

ALGO = OmegaConf.merge(OmegaConf.structured(AlgorithmConfig), dict(  # the schema's defaults for the rest
    policy_loss="ppo_clip", loss_agg_mode="token-mean", clip_ratio_low=0.2, clip_ratio_high=0.2,
    kl_placement="none", kl_coef=0.0, entropy_coef=0.01,
))


def _trainer_cfg(**overrides):
    cfg = dict(lr=1e-2, weight_decay=0.0, warmup_steps=0, grad_clip=1e9, ppo_epochs=1, mini_batches=1,
               micro_batch_size=64, max_tokens_per_gpu=None, remove_padding=False)
    return OmegaConf.create({**cfg, **overrides})


def _step(model, batch, trainer_cfg):
    """One optimizer step; returns its metrics and the (full) gradients it applied."""
    actor = Actor(model, ALGO, trainer_cfg, AlgorithmSpec.from_config(ALGO, batch.response_mask.shape[1]))
    grads, step = {}, actor.optimizer.step

    def snapshot_then_step(*args, **kwargs):  # the actor frees the gradients right after the step
        grads.update({name: (p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad).clone()
                      for name, p in model.named_parameters()})
        return step(*args, **kwargs)

    actor.optimizer.step = snapshot_then_step
    metrics, _ = actor._optimizer_step(batch)
    return metrics, grads


def _batch(share_prompts: bool):
    return grouped_batch(groups=4, n=4, seed=4) if share_prompts else random_batch(rows=8)


def _rank_main(rank, world_size, port, model_dir, out_path, share_prompts):
    from transformers import AutoModelForCausalLM

    from core.distributed.fsdp import FSDPSettings, device_mesh, shard_model
    from core.trainer.setup import attention_kernel

    init_gloo(rank, world_size, port)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation=attention_kernel(torch.device("cpu"), True, share_prompts))
    shard_model(model, device_mesh(torch.device("cpu")), FSDPSettings(compute_dtype=torch.float32))
    batch = _batch(share_prompts)
    rows = data_parallel_rows(row_lengths(batch.attention_mask), batch.group_ids.tolist(), world_size)[rank]
    if share_prompts:  # the worker group's split: whole groups, so each prompt runs once over all ranks
        counts = batch.group_ids[rows].bincount()
        assert set(counts[counts > 0].tolist()) == {4}
    # a 12-token budget makes several packed micro-batches per rank, a different count on each
    cfg = _trainer_cfg(max_tokens_per_gpu=12, remove_padding=True, share_prompts=share_prompts)
    metrics, grads = _step(model, batch.select(torch.tensor(rows)), cfg)
    if rank == 0:
        torch.save({"metrics": metrics, "grads": grads}, out_path)
    torch.distributed.destroy_process_group()


@pytest.mark.parametrize("share_prompts", [False, True], ids=["packed", "shared_prompts"])
def test_two_rank_fsdp_step_matches_one_process(tiny_model_dir, tmp_path, share_prompts):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    expected_metrics, expected_grads = _step(model, _batch(share_prompts), _trainer_cfg())
    mp.spawn(_rank_main, args=(2, free_port(), tiny_model_dir, tmp_path / "rank0.pt", share_prompts), nprocs=2,
             join=True)
    got = torch.load(tmp_path / "rank0.pt")
    for key in ("actor/pg_loss", "actor/grad_norm", "actor/pg_clipfrac"):
        if key in expected_metrics:
            assert got["metrics"][key] == pytest.approx(expected_metrics[key], rel=1e-4, abs=1e-6), key
    for name, grad in expected_grads.items():
        torch.testing.assert_close(got["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)
    # (updated weights are not compared: Adam turns the ~1e-10 noise of k_proj.bias's zero gradient
    # into full-size steps of random sign)


def test_token_budget_micro_batches_match_one_big_batch(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    twin = copy.deepcopy(model)
    batch = random_batch(rows=8, seed=3)
    big_metrics, big_grads = _step(model, batch, _trainer_cfg())
    for padded in (True, False):
        small = copy.deepcopy(twin)
        metrics, grads = _step(small, batch, _trainer_cfg(max_tokens_per_gpu=10, remove_padding=not padded))
        assert metrics["actor/pg_loss"] == pytest.approx(big_metrics["actor/pg_loss"], rel=1e-5)
        for name, grad in big_grads.items():
            torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
