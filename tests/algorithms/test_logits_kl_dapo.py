"""Chunked log-probs/entropy, KL estimators and controllers, DAPO helpers."""

import math

import pytest
import torch

from core.algorithms import (
    AdaptiveKLController,
    DynamicSamplingAccumulator,
    FixedKLController,
    apply_kl_in_reward,
    entropy_from_logits,
    informative_rows,
    kl_estimate,
    kl_penalized_rewards,
    logprobs_from_logits,
    make_kl_controller,
    overlong_penalty,
)
from core.errors import TandemError


def _logits():
    torch.manual_seed(0)
    return torch.randn(2, 5, 7, dtype=torch.float64), torch.randint(0, 7, (2, 5))


def test_chunked_logprobs_match_log_softmax_and_gradcheck():
    logits, labels = _logits()
    expected = torch.log_softmax(logits, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    # 10 tokens in chunks of 3 (the last chunk is partial)
    assert torch.allclose(logprobs_from_logits(logits, labels, chunk_size=3).double(), expected, atol=1e-6)
    # float32 internally, so check the gradient against float64 autograd rather than with gradcheck
    leaf = logits.clone().requires_grad_()
    weights = torch.randn(2, 5, dtype=torch.float64)
    (logprobs_from_logits(leaf, labels, chunk_size=3) * weights).sum().backward()
    ref_leaf = logits.clone().requires_grad_()
    (torch.log_softmax(ref_leaf, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1) * weights).sum().backward()
    assert torch.allclose(leaf.grad, ref_leaf.grad, atol=1e-6)


def test_chunked_entropy_matches_reference_and_its_gradient():
    logits, _ = _logits()
    ref_leaf = logits.clone().requires_grad_()
    probs = torch.softmax(ref_leaf, -1)
    reference = -(probs * torch.log_softmax(ref_leaf, -1)).sum(-1)
    leaf = logits.clone().requires_grad_()
    entropy = entropy_from_logits(leaf, chunk_size=4)
    assert torch.allclose(entropy.double(), reference, atol=1e-6)
    weights = torch.randn(2, 5, dtype=torch.float64)
    (entropy * weights).sum().backward()
    (reference * weights).sum().backward()
    assert torch.allclose(leaf.grad, ref_leaf.grad, atol=1e-6)


def test_entropy_of_known_distributions_and_banned_tokens():
    # uniform over 4 -> log 4; one banned (-inf) token of 3 -> uniform over 2 -> log 2; gradient finite
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, float("-inf"), 1.0 - 1e9]], requires_grad=True)
    entropy = entropy_from_logits(logits, chunk_size=1)
    assert torch.allclose(entropy, torch.tensor([math.log(4), math.log(2)]))
    entropy.sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_bfloat16_logits_give_float32_logprobs_and_bf16_grads():
    logits, labels = _logits()
    leaf = logits.to(torch.bfloat16).requires_grad_()
    out = logprobs_from_logits(leaf, labels, chunk_size=4)
    assert out.dtype == torch.float32
    out.sum().backward()
    assert leaf.grad.dtype == torch.bfloat16


def test_kl_estimators_hand_numbers():
    ref = torch.zeros(4, dtype=torch.float64)
    logp = torch.tensor([0.0, -1.0, 1.0, -30.0], dtype=torch.float64)  # d = logp - ref
    assert torch.allclose(kl_estimate(logp, ref, "k1"), logp)
    assert torch.allclose(kl_estimate(logp, ref, "abs"), logp.abs())
    assert torch.allclose(kl_estimate(logp, ref, "k2"), torch.tensor([0, 0.5, 0.5, 450.0], dtype=torch.float64))
    # k3 = e^x - x - 1 with x = ref - logp: x=0 -> 0; x=1 -> e - 2; x=-1 -> e^-1; x=30 -> clamped to 10
    expected = torch.tensor([0, math.e - 2, math.exp(-1), 10.0], dtype=torch.float64)
    assert torch.allclose(kl_estimate(logp, ref, "k3"), expected)
    assert torch.allclose(kl_estimate(logp, ref, "low_var_kl"), expected)
    with pytest.raises(TandemError, match="kl_estimator='k4'"):
        kl_estimate(logp, ref, "k4")


@pytest.mark.parametrize("base", ["k1", "abs", "k3", "low_var_kl"])
def test_plus_variant_has_estimator_value_and_k2_gradient(base):
    ref = torch.tensor([0.3, -0.2, 0.0], dtype=torch.float64)
    logp = torch.tensor([-0.5, 0.4, 1.0], dtype=torch.float64, requires_grad=True)
    value = kl_estimate(logp, ref, base + "+")
    assert torch.allclose(value, kl_estimate(logp.detach(), ref, base))
    (grad,) = torch.autograd.grad(value.sum(), logp)
    # d/dlogp of (logp - ref)^2 / 2 = logp - ref
    assert torch.allclose(grad, (logp - ref).detach())
    # and that is not the plain estimator's gradient, e.g. k3's 1 - exp(ref - logp)
    if base in ("k3", "low_var_kl"):
        (plain,) = torch.autograd.grad(kl_estimate(logp, ref, base).sum(), logp)
        assert torch.allclose(plain, 1 - torch.exp(ref - logp.detach()))
        assert not torch.allclose(plain, grad)


def test_kl_in_reward_and_controllers():
    rewards = torch.tensor([[1.0, 1.0, 1.0]])
    kl = torch.tensor([[0.5, 9.0, -0.2]])
    # masked middle token is not penalised: 1 - 0.1*0.5, 1, 1 + 0.1*0.2
    penalized = kl_penalized_rewards(rewards, kl, torch.tensor([[1, 0, 1]]), 0.1)
    assert torch.allclose(penalized, torch.tensor([[0.95, 1.0, 1.02]]))

    fixed = make_kl_controller(0.1)
    fixed.update(5.0, 2)
    assert isinstance(fixed, FixedKLController) and fixed.value == 0.1
    adaptive = make_kl_controller(0.1, target=1.0, horizon=10)
    assert isinstance(adaptive, AdaptiveKLController)
    adaptive.update(1.5, n_steps=2)  # error clip(0.5) = 0.2 -> * (1 + 0.2 * 2 / 10) = 0.104
    assert adaptive.value == pytest.approx(0.104)
    adaptive.update(0.9, n_steps=2)  # error -0.1 -> * (1 - 0.1 * 2 / 10) = 0.10192
    assert adaptive.value == pytest.approx(0.10192)


def test_apply_kl_in_reward_feeds_the_controller_the_mean_sequence_kl():
    # k1 KL per token: row 0: 0.2, 0.4 (mean 0.3); row 1: 1.0 and a masked token (mean 1.0) -> batch 0.65
    logp = torch.tensor([[0.2, 0.4], [1.0, 50.0]])
    ref = torch.zeros(2, 2)
    mask = torch.tensor([[1, 1], [1, 0]])
    controller = AdaptiveKLController(0.5, target=0.65, horizon=100)
    result = apply_kl_in_reward(torch.zeros(2, 2), logp, ref, mask, controller, estimator="k1")
    assert result.mean_kl == pytest.approx(0.65) and result.coef == 0.5
    assert torch.allclose(result.token_rewards, torch.tensor([[-0.1, -0.2], [-0.5, 0.0]]))
    assert controller.value == pytest.approx(0.5)  # on target: unchanged


def test_informative_rows_drop_all_equal_groups_and_singletons():
    scores = torch.tensor([1.0, 1.0, 0.0, 1.0, 2.0])
    groups = torch.tensor([0, 0, 1, 1, 5])
    assert informative_rows(scores, groups).tolist() == [False, False, True, True, False]


def test_dynamic_sampling_accumulates_whole_groups_up_to_target():
    acc = DynamicSamplingAccumulator(target_groups=2, max_tries=3)
    # rollout 1: group 3 informative, group 4 all ones
    acc.add({"x": torch.tensor([10, 11, 12, 13]), "text": ["a", "b", "c", "d"]},
            scores=torch.tensor([1.0, 0, 1, 1]), group_ids=torch.tensor([3, 3, 4, 4]))
    assert not acc.done and acc.kept_groups == 1
    # rollout 2: groups 0 and 2 informative but only one more is needed -> group 0
    acc.add({"x": torch.arange(20, 26), "text": list("uvwxyz")},
            scores=torch.tensor([0.0, 1, 1, 1, 0, 1]), group_ids=torch.tensor([0, 0, 1, 1, 2, 2]))
    assert acc.done and acc.tries == 2
    rows, group_ids = acc.result()
    assert rows["x"].tolist() == [10, 11, 20, 21] and rows["text"] == ["a", "b", "u", "v"]
    assert group_ids.tolist() == [0, 0, 1, 1]  # renumbered, rollout 2's group 0 does not collide


def test_dynamic_sampling_gives_up_after_max_tries():
    acc = DynamicSamplingAccumulator(target_groups=5, max_tries=2)
    while not acc.done:
        acc.add({"x": torch.tensor([1, 2])}, scores=torch.tensor([1.0, 1.0]), group_ids=torch.tensor([0, 0]))
    assert acc.tries == 2
    with pytest.raises(TandemError, match="max_sampling_tries"):
        acc.result()


def test_overlong_penalty_ramp():
    # max 10, buffer 4: <= 6 -> 0;  7 -> -(7-6)/4 = -0.25;  10 -> -1;  beyond -> -1
    got = overlong_penalty(torch.tensor([6, 7, 10, 12]), max_length=10, buffer=4, penalty_factor=1.0)
    assert torch.allclose(got, torch.tensor([0.0, -0.25, -1.0, -1.0]))
    # factor 0.5 scales it;  buffer 0: only beyond max is punished
    assert torch.allclose(overlong_penalty(torch.tensor([8]), 10, 4, 0.5), torch.tensor([-0.25]))
    assert torch.allclose(overlong_penalty(torch.tensor([10, 11]), 10, 0, 1.0), torch.tensor([0.0, -1.0]))


@pytest.mark.parametrize("use", ["both", "logprobs_only", "entropy_only"])
def test_fused_logprobs_and_entropy_equal_the_separate_functions(use):
    from core.algorithms.entropy import logprobs_and_entropy_from_logits

    logits, labels = _logits()
    logits[0, 1, 3] = float("-inf")  # a banned token: p = 0 must not turn into NaN
    labels[0, 1] = 2
    w_lp, w_h = torch.randn(2, 5, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64)
    fused_leaf, ref_leaf = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    lp, h = logprobs_and_entropy_from_logits(fused_leaf, labels, chunk_size=3, temperature=0.7)
    ref_lp = logprobs_from_logits(ref_leaf, labels, chunk_size=3, temperature=0.7)
    ref_h = entropy_from_logits(ref_leaf, chunk_size=3, temperature=0.7)
    assert torch.allclose(lp, ref_lp, atol=1e-6) and torch.allclose(h, ref_h, atol=1e-6)
    terms = {"both": lambda a, b: (a * w_lp).sum() + (b * w_h).sum(), "logprobs_only": lambda a, b: (a * w_lp).sum(),
             "entropy_only": lambda a, b: (b * w_h).sum()}[use]
    terms(lp, h).backward()
    terms(ref_lp, ref_h).backward()
    assert torch.isfinite(fused_leaf.grad).all() and torch.allclose(fused_leaf.grad, ref_leaf.grad, atol=1e-6)
