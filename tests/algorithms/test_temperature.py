"""The trainer scores sampled tokens at the rollout temperature: log-probs, entropies and their
gradients under softmax(logits / T), checked by hand and against the HF engine's own samples."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from core.algorithms.entropy import entropy_from_logits
from core.algorithms.logprobs import logprobs_from_logits
from core.distributed.packing import packed_response_logprobs
from core.rollout.base import SamplingParams
from core.rollout.hf_engine import HFRolloutEngine
from core.trainer.actor import response_logprobs, scoring_temperature
from core.trainer.batch import batch_from_rollout


def test_tempered_logprob_entropy_and_gradient_by_hand():
    # z = [0, 2], T = 2: z / T = [0, 1]; softmax = [1, e] / (1 + e) = [0.2689414, 0.7310586]
    # log p(1) = 1 - ln(1 + e) = -0.3132617
    # d log p(1) / dz = (onehot(1) - softmax(z / T)) / T = [-0.1344707, 0.1344707]
    # H = -(0.2689414 * ln 0.2689414 + 0.7310586 * ln 0.7310586) = 0.5822033
    logits = torch.tensor([[0.0, 2.0]], requires_grad=True)
    logprob = logprobs_from_logits(logits, torch.tensor([1]), temperature=2.0)
    assert logprob.item() == pytest.approx(-0.3132617, abs=1e-6)
    logprob.sum().backward()
    torch.testing.assert_close(logits.grad, torch.tensor([[-0.1344707, 0.1344707]]), atol=1e-6, rtol=0)
    assert entropy_from_logits(logits.detach(), temperature=2.0).item() == pytest.approx(0.5822033, abs=1e-6)
    # T = 1 is the untempered softmax: log p(1) = 2 - ln(1 + e^2) = -0.1269280
    assert logprobs_from_logits(logits.detach(), torch.tensor([1])).item() == pytest.approx(-0.1269280, abs=1e-6)


def test_tempered_entropy_gradient_matches_autograd():
    torch.manual_seed(0)
    logits = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    reference = logits.detach().clone().requires_grad_(True)
    entropy_from_logits(logits, chunk_size=2, temperature=0.7).sum().backward()
    p = torch.softmax(reference / 0.7, -1)
    (-(p * torch.log(p)).sum(-1)).sum().backward()
    torch.testing.assert_close(logits.grad, reference.grad)


def test_temperature_must_be_positive():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        logprobs_from_logits(torch.zeros(1, 2), torch.tensor([0]), temperature=0.0)


def test_scoring_temperature_follows_the_rollout():
    assert scoring_temperature(OmegaConf.create({"temperature": 0.5})) == 0.5
    assert scoring_temperature(OmegaConf.create({"temperature": 0.0})) == 1.0  # greedy: plain softmax


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_trainer_logprobs_of_engine_samples_equal_the_engines_at_t_half(tiny_model_dir, packed):
    engine = HFRolloutEngine.from_pretrained(tiny_model_dir, device="cpu", dtype=torch.float32)
    prompts = [[97, 98, 61], [99, 61], [100, 101, 102, 61]]
    out = engine.generate(prompts, SamplingParams(n=3, max_tokens=6, seed=5, temperature=0.5))
    batch = batch_from_rollout(out, engine.pad_token_id)
    score = packed_response_logprobs if packed else response_logprobs
    with torch.no_grad():
        tempered, _ = score(engine.model, batch, False, 0.5)
        raw, _ = score(engine.model, batch, False, 1.0)
    mask = batch.response_mask
    torch.testing.assert_close(tempered[mask], out.response_logprobs[mask], atol=1e-4, rtol=1e-4)
    # untempered scoring is the off-policy bug this guards against: whole nats apart on some tokens
    assert (raw[mask] - out.response_logprobs[mask]).abs().max() > 0.1
    assert math.isfinite(tempered[mask].sum().item())
