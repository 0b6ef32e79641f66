"""Advantage estimators against numbers derived by hand (derivations in the comments)."""

import math

import pytest
import torch

from core.algorithms import compute_advantages
from core.errors import TandemError

EPS = 1e-6


def _grpo_batch():
    # row: group, token rewards, mask -> score (sum of unmasked rewards)
    # 0: g0, [0, 0, 1], [1,1,1] -> 1
    # 1: g0, [0, 5, 0], [1,0,1] -> 0 (the 5 is masked out)
    # 2: g0, [0, 0, 2], [1,1,1] -> 2
    # 3: g7, [0, 3, 9], [1,1,0] -> 3 (group of one)
    # 4, 5: g2, both score 1 (all equal)
    rewards = torch.tensor(
        [[0, 0, 1], [0, 5, 0], [0, 0, 2], [0, 3, 9], [0, 0, 1], [1, 0, 0]], dtype=torch.float64
    )
    mask = torch.tensor([[1, 1, 1], [1, 0, 1], [1, 1, 1], [1, 1, 0], [1, 1, 1], [1, 0, 0]], dtype=torch.float64)
    group_ids = torch.tensor([0, 0, 0, 7, 2, 2])
    return rewards, mask, group_ids


def _per_row(advantages, mask):
    # every estimator below broadcasts one value per row over its unmasked tokens
    row_value = advantages.sum(-1) / mask.sum(-1)
    assert torch.allclose(advantages, row_value.unsqueeze(-1) * mask)
    return row_value


def test_grpo_hand_numbers():
    rewards, mask, groups = _grpo_batch()
    adv, returns = compute_advantages("grpo", token_rewards=rewards, response_mask=mask, group_ids=groups)
    # g0: scores 1, 0, 2 -> mean 1, unbiased std sqrt((0 + 1 + 1) / 2) = 1
    # g7 (one member): mean 0, std 1 -> 3 / (1 + 1e-6);  g2: std 0 -> 0 / 1e-6 = 0
    expected = torch.tensor([0, -1 / (1 + EPS), 1 / (1 + EPS), 3 / (1 + EPS), 0, 0], dtype=torch.float64)
    assert torch.allclose(_per_row(adv, mask), expected)
    assert torch.equal(adv, returns)


def test_dr_grpo_does_not_divide_by_std():
    rewards, mask, groups = _grpo_batch()
    adv, _ = compute_advantages("dr_grpo", token_rewards=rewards, response_mask=mask, group_ids=groups)
    # g0: 1-1, 0-1, 2-1;  g7: 3 - 0;  g2: 1-1, 1-1
    assert torch.allclose(_per_row(adv, mask), torch.tensor([0, -1, 1, 3, 0, 0], dtype=torch.float64))


def test_rloo_subtracts_mean_of_the_others():
    rewards, mask, groups = _grpo_batch()
    adv, _ = compute_advantages("rloo", token_rewards=rewards, response_mask=mask, group_ids=groups)
    # g0: 1 - (0+2)/2 = 0;  0 - (1+2)/2 = -1.5;  2 - (1+0)/2 = 1.5;  g7 keeps 3;  g2: 1 - 1 = 0
    assert torch.allclose(_per_row(adv, mask), torch.tensor([0, -1.5, 1.5, 3, 0, 0], dtype=torch.float64))


def test_reinforce_pp_return_to_go_carries_through_holes_then_whitens():
    rewards = torch.tensor([[1.0, 5.0, 2.0, 3.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 0, 1, 1]], dtype=torch.float64)
    adv, returns = compute_advantages("reinforce_pp", token_rewards=rewards, response_mask=mask, gamma=0.5)
    # t3: 3;  t2: 2 + 0.5*3 = 3.5;  t1 (hole): carries 3.5, reported 0;  t0: 1 + 0.5*3.5 = 2.75
    assert torch.allclose(returns, torch.tensor([[2.75, 0, 3.5, 3.0]], dtype=torch.float64))
    # whiten 2.75, 3.5, 3: mean 37/12, deviations -1/3, 5/12, -1/12, unbiased var (16+25+1)/144/2 = 7/48
    std = math.sqrt(7 / 48 + 1e-8)
    expected = torch.tensor([[-1 / 3 / std, 0, 5 / 12 / std, -1 / 12 / std]], dtype=torch.float64)
    assert torch.allclose(adv, expected)


def test_reinforce_pp_baseline_subtracts_group_mean_then_whitens():
    rewards = torch.tensor([[0, 1.0], [0, 3.0], [5.0, 0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1], [0, 1], [1, 0]], dtype=torch.float64)
    groups = torch.tensor([0, 0, 1])
    adv, _ = compute_advantages(
        "reinforce_pp_baseline", token_rewards=rewards, response_mask=mask, group_ids=groups
    )
    # g0 scores 1, 3 -> -1, +1;  g1 (one member) keeps 5.  Over the 4 unmasked tokens: -1, -1, 1, 5
    # mean 1, deviations -2, -2, 0, 4, unbiased var 24/3 = 8
    s = math.sqrt(8 + 1e-8)
    assert torch.allclose(adv, torch.tensor([[-2 / s, -2 / s], [0, 0], [4 / s, 0]], dtype=torch.float64))


def test_remax_subtracts_greedy_baseline_from_return_to_go():
    rewards = torch.tensor([[0, 1.0, 2.0]])
    mask = torch.tensor([[1, 1, 0]])
    adv, returns = compute_advantages(
        "remax", token_rewards=rewards, response_mask=mask, baseline_rewards=torch.tensor([0.5])
    )
    # returns (gamma 1, masked 2 ignored): [1, 1, 0]; minus 0.5 on unmasked tokens
    assert torch.allclose(returns, torch.tensor([[1.0, 1.0, 0]]))
    assert torch.allclose(adv, torch.tensor([[0.5, 0.5, 0]]))


def test_gae_skips_holes_and_whitens():
    rewards = torch.tensor([[0, 7.0, 2.0]], dtype=torch.float64)
    values = torch.tensor([[0.5, 9.0, 1.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 0, 1]], dtype=torch.float64)
    adv, returns = compute_advantages(
        "gae", token_rewards=rewards, response_mask=mask, values=values, gamma=0.9, lam=0.5
    )
    # t2: delta = 2 + 0.9*0 - 1 = 1, A2 = 1;  t1 hole: carries V_next = 1 and A = 1
    # t0: delta = 0 + 0.9*1 - 0.5 = 0.4, A0 = 0.4 + 0.9*0.5*1 = 0.85
    # returns = A + V: 1.35, 2.0;  whiten 0.85, 1: mean 0.925, dev -/+0.075, var 2*0.075^2/1 = 0.01125
    assert torch.allclose(returns, torch.tensor([[1.35, 0, 2.0]], dtype=torch.float64))
    s = math.sqrt(0.01125 + 1e-8)
    assert torch.allclose(adv, torch.tensor([[-0.075 / s, 0, 0.075 / s]], dtype=torch.float64))


def test_masked_positions_never_matter():
    rewards, mask, groups = _grpo_batch()
    values = torch.rand_like(rewards)
    garbage_rewards = torch.where(mask.bool(), rewards, torch.full_like(rewards, 1e6))
    garbage_values = torch.where(mask.bool(), values, torch.full_like(values, -1e6))
    for name in ("grpo", "dr_grpo", "rloo", "reinforce_pp", "reinforce_pp_baseline", "remax", "opo", "gpg", "gae"):
        kwargs = dict(response_mask=mask, group_ids=groups, baseline_rewards=torch.ones(6), gamma=0.9, lam=0.8)
        clean = compute_advantages(name, token_rewards=rewards, values=values, **kwargs)
        dirty = compute_advantages(name, token_rewards=garbage_rewards, values=garbage_values, **kwargs)
        for a, b in zip(clean, dirty):
            assert torch.allclose(a, b), name
            assert torch.all(a[mask == 0] == 0), name


def test_unknown_estimator_and_missing_inputs_are_user_errors():
    rewards, mask, groups = _grpo_batch()
    with pytest.raises(TandemError, match="valid: grpo, dr_grpo, rloo, reinforce_pp"):
        compute_advantages("ppo", token_rewards=rewards, response_mask=mask, group_ids=groups)
    with pytest.raises(TandemError, match="gae needs values"):
        compute_advantages("gae", token_rewards=rewards, response_mask=mask)
    with pytest.raises(TandemError, match="grpo needs group_ids"):
        compute_advantages("grpo", token_rewards=rewards, response_mask=mask)


def test_opo_hand_numbers():
    rewards, mask, groups = _grpo_batch()
    adv, returns = compute_advantages("opo", token_rewards=rewards, response_mask=mask, group_ids=groups)
    # g0: scores 1, 0, 2 with lengths 3, 2, 3 -> baseline (3*1 + 2*0 + 3*2) / 8 = 9/8
    #     -> 1 - 9/8 = -1/8, 0 - 9/8 = -9/8, 2 - 9/8 = 7/8
    # g7 (one member): baseline 0 -> 3;  g2: scores 1, 1 with lengths 3, 1 -> baseline 1 -> 0, 0
    assert _per_row(adv, mask).tolist() == pytest.approx([-1 / 8, -9 / 8, 7 / 8, 3.0, 0.0, 0.0])
    assert torch.equal(adv, returns)


def test_gpg_hand_numbers():
    rewards, mask, groups = _grpo_batch()
    adv, _ = compute_advantages("gpg", token_rewards=rewards, response_mask=mask, group_ids=groups)
    # scores 1, 0, 2, 3, 1, 1: 5 of 6 non-zero -> alpha = 6/5; no std division
    # g0 mean 1 -> 0, -1, 1;  g7 alone (mean 0) -> 3;  g2 mean 1 -> 0, 0;  times 6/5
    assert _per_row(adv, mask).tolist() == pytest.approx([0.0, -1.2, 1.2, 3.6, 0.0, 0.0])
