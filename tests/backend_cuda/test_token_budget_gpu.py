"""The micro-batch token budget on a real GPU: the first update measures its cost per token and the next
budget fills the free memory's headroom (core/trainer/token_budget.py; the CPU tests use a fake device).

Run on a GPU host: `pytest -m gpu tests/backend_cuda`. Skipped elsewhere.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

sys.path.insert(0, str(Path(__file__).parents[1] / "distributed"))
from dist_utils import random_batch  # noqa: E402


def test_the_first_update_sizes_the_next_from_free_memory(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from core.algorithms.spec import AlgorithmSpec
    from core.config.schema import AlgorithmConfig
    from core.trainer.actor import Actor
    from core.trainer.token_budget import MIN_TOKENS

    algo = OmegaConf.structured(AlgorithmConfig)
    trainer = OmegaConf.create(dict(lr=1e-3, weight_decay=0.0, warmup_steps=0, grad_clip=1.0, ppo_epochs=1,
                                    mini_batches=1, micro_batch_size=64, max_tokens_per_gpu=None,
                                    remove_padding=False, reuse_on_policy_logprobs=True))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).cuda()
    actor = Actor(model, algo, trainer, AlgorithmSpec.from_config(algo, 5))
    assert actor.token_budget is not None and actor.token_budget.measured is None
    batch = random_batch(rows=64, seed=3)
    batch.old_logprobs, _ = actor.compute_logprobs(batch)
    result = actor.update(batch)
    budget = actor.token_budget.measured
    assert budget is not None and budget > MIN_TOKENS  # a tiny model's tokens are cheap: far more than the floor fit
    assert result.metrics["perf/micro_batch_tokens"] == budget
    actor.update(batch)  # the whole batch (64 rows of <= 11 tokens, padded) now fits one micro-batch
    lengths = batch.attention_mask.sum(-1)
    assert actor.token_budget.largest_micro_tokens == batch.rows * int(lengths.max())
