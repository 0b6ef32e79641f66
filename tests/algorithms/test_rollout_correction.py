"""Rollout/trainer mismatch metrics and corrections, against numbers derived by hand."""

from __future__ import annotations

import math

import pytest
import torch

from core.algorithms import compute_policy_loss
from core.algorithms.rollout_correction import mismatch_metrics, rollout_correction_weights

LN2 = math.log(2)


def _rows():
    # d = old - rollout: row 1: 0, ln 4, -ln 4; row 2: ln 2, ln 8 and a masked token (99)
    old = torch.zeros(2, 3, dtype=torch.float64)
    rollout = -torch.tensor([[0, 2 * LN2, -2 * LN2], [LN2, 3 * LN2, 99.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    return old, rollout, mask


def test_mismatch_metrics_hand_numbers():
    metrics = mismatch_metrics(*_rows())
    # |d| = 0, 2 ln 2, 2 ln 2, ln 2, 3 ln 2 -> mean 8 ln 2 / 5, max 3 ln 2
    assert metrics["mismatch/abs_logprob_diff_mean"] == pytest.approx(8 * LN2 / 5)
    assert metrics["mismatch/abs_logprob_diff_max"] == pytest.approx(3 * LN2)
    # NeMo-RL's token_mult_prob_error: mean of exp|d| = (1 + 4 + 4 + 2 + 8) / 5
    assert metrics["mismatch/token_mult_prob_error"] == pytest.approx(19 / 5)


@pytest.mark.parametrize("mode, expected, zeroed", [
    ("token_tis", [[1, 2, 0.25], [2, 2, 0]], 0.0),      # min(e^d, 2): 4 -> 2, 8 -> 2
    ("seq_tis", [[1, 1, 1], [2, 2, 0]], 0.0),           # row 1: e^0 = 1; row 2: e^(ln 16) = 16 -> 2
    ("token_mask", [[1, 0, 0], [1, 0, 0]], 3 / 5),      # keep |d| <= ln 2
    ("seq_mask", [[1, 1, 1], [0, 0, 0]], 2 / 5),        # row 2's mean d = ln 4 > ln 2: dropped
])
def test_correction_weights_hand_numbers(mode, expected, zeroed):
    weights, metrics = rollout_correction_weights(*_rows(), mode, cap=2.0)
    assert torch.allclose(weights, torch.tensor(expected, dtype=torch.float64))
    assert metrics["correction_zeroed"] == pytest.approx(zeroed)
    assert not weights.requires_grad


def test_token_weights_scale_the_per_token_policy_losses():
    logprobs = torch.tensor([[-1.0, -2.0]], dtype=torch.float64, requires_grad=True)
    kwargs = dict(logprobs=logprobs, old_logprobs=logprobs.detach(), advantages=torch.ones(1, 2, dtype=torch.float64),
                  response_mask=torch.ones(1, 2, dtype=torch.float64), loss_agg_mode="token-mean",
                  global_token_count=2, global_seq_count=1)
    # ratio 1, A = 1: per-token loss -1 each; weights 2 and 0.25 -> (-2 - 0.25) / 2
    loss, _ = compute_policy_loss("ppo_clip", token_weights=torch.tensor([[2.0, 0.25]], dtype=torch.float64), **kwargs)
    assert loss.item() == pytest.approx(-2.25 / 2)
    loss.backward()
    assert torch.allclose(logprobs.grad, torch.tensor([[-1.0, -0.125]], dtype=torch.float64))  # -w A r / 2


def test_seq_tis_clamps_the_sum_not_each_token():
    # d = (30, -29, 0, 0): the sum is 1, e^1 = 2.72 -> capped at C = 2. Clamping each token at +-20 first would
    # sum to 0 and give e^0 = 1 (the old behaviour; verl clamps only the sum)
    old = torch.tensor([[30.0, -29.0, 0.0, 0.0]], dtype=torch.float64)
    weights, _ = rollout_correction_weights(old, torch.zeros_like(old), torch.ones(1, 4, dtype=torch.bool),
                                            "seq_tis", cap=2.0)
    assert weights.tolist() == [[2.0, 2.0, 2.0, 2.0]]


def test_rejected_tokens_leave_the_mask_so_means_divide_by_the_kept():
    """verl's rollout_rs: token-mean over the kept tokens. Row 1 keeps 1 of 3 tokens, row 2 keeps 1 of 2
    (`_rows`, token_mask, C = 2). Per-token losses -A r = -1 on every token (A = 1, ratio 1): token-mean over the
    2 kept tokens is -2 / 2 = -1; weighting by 0/1 but dividing by all 5 tokens would give -2 / 5."""
    from core.algorithms.rollout_correction import rejection_mask

    old, rollout, mask = _rows()
    kept = rejection_mask(old, rollout, mask, "token_mask", cap=2.0)
    assert kept.tolist() == [[True, False, False], [True, False, False]]
    logprobs = old.clone().requires_grad_(True)
    loss, _ = compute_policy_loss("ppo_clip", logprobs=logprobs, old_logprobs=old, advantages=torch.ones_like(old),
                                  response_mask=kept, loss_agg_mode="token-mean",
                                  global_token_count=int(kept.sum()), global_seq_count=2)
    assert loss.item() == pytest.approx(-1.0)
    # seq-mean-token-mean: each row's mean over its kept tokens (-1 and -1), then the mean over rows: -1
    loss, _ = compute_policy_loss("ppo_clip", logprobs=logprobs, old_logprobs=old, advantages=torch.ones_like(old),
                                  response_mask=kept, loss_agg_mode="seq-mean-token-mean",
                                  global_token_count=int(kept.sum()), global_seq_count=2)
    assert loss.item() == pytest.approx(-1.0)


def test_a_mask_mode_keeps_the_separate_behaviour_pass():
    from types import SimpleNamespace

    from core.algorithms.spec import AlgorithmSpec
    from core.config.schema import AlgorithmConfig
    from core.trainer.actor import behaviour_logprobs_from_update

    trainer = SimpleNamespace(reuse_on_policy_logprobs=True, ppo_epochs=1, mini_batches=1)
    for mode, reuse in (("token_mask", False), ("seq_mask", False), ("token_tis", True), ("none", True)):
        spec = AlgorithmSpec.from_config(AlgorithmConfig(rollout_correction=mode), 16)
        assert spec.rejects_tokens is (not reuse) and behaviour_logprobs_from_update(trainer, spec) is reuse
