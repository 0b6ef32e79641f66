"""Policy losses, aggregation and value loss against hand-derived numbers."""

import math

import pytest
import torch

from core.algorithms import PolicyLossOptions, aggregate_loss, compute_policy_loss, loss_counts, value_loss
from core.errors import TandemError


def _ppo_tokens():
    # token: advantage, ratio -> per-token loss with low 0.2, high 0.28 (clip-higher), c = 3
    # 1: A=+1, r=1.5 -> max(-1.5, -1.28) = -1.28                (clipped)
    # 2: A=+1, r=0.5 -> max(-0.5, -0.8)  = -0.5
    # 3: A=-1, r=1.5 -> max(1.5, 1.28)   =  1.5, min with 3 -> 1.5
    # 4: A=-1, r=5   -> max(5, 1.28)     =  5,   min with 3 -> 3  (dual clip)
    # 5: A=-1, r=0.5 -> max(0.5, 0.8)    =  0.8                 (clipped)
    # 6: masked (A=100, r=50)
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0, -1.0, 100.0]], dtype=torch.float64)
    ratio = torch.tensor([[1.5, 0.5, 1.5, 5.0, 0.5, 50.0]], dtype=torch.float64)
    old = torch.full_like(ratio, -2.0)
    logprobs = (old + ratio.log()).requires_grad_()
    mask = torch.tensor([[1, 1, 1, 1, 1, 0]], dtype=torch.float64)
    return logprobs, old, adv, mask


def test_ppo_clip_dual_clip_and_clip_higher():
    logprobs, old, adv, mask = _ppo_tokens()
    loss, metrics = compute_policy_loss(
        "ppo_clip", logprobs=logprobs, old_logprobs=old, advantages=adv, response_mask=mask,
        loss_agg_mode="token-mean", global_token_count=5, global_seq_count=1,
        options=PolicyLossOptions(clip_ratio_high=0.28),
    )
    # (-1.28 - 0.5 + 1.5 + 3 + 0.8) / 5 = 3.52 / 5
    assert loss.item() == pytest.approx(3.52 / 5)
    assert metrics["clip_frac"] == pytest.approx(2 / 5)  # tokens 1 and 5
    assert metrics["clip_frac_lower"] == pytest.approx(1 / 5)  # token 4
    # approx KL = mean(-log r) = -log(1.5 * 0.5 * 1.5 * 5 * 0.5) / 5
    assert metrics["approx_kl"] == pytest.approx(-math.log(2.8125) / 5)
    loss.backward()
    # unclipped tokens: d(-A r)/d logp = -A r, over 5 tokens; clipped and masked tokens: 0
    expected = torch.tensor([[0, -0.5 / 5, 1.5 / 5, 0, 0, 0]], dtype=torch.float64)
    assert torch.allclose(logprobs.grad, expected)


def test_ppo_log_ratio_is_clamped_before_exp():
    logprobs = torch.tensor([[0.0]], requires_grad=True)
    loss, _ = compute_policy_loss(
        "ppo_clip", logprobs=logprobs, old_logprobs=torch.tensor([[-500.0]]), advantages=torch.tensor([[-1.0]]),
        response_mask=torch.ones(1, 1), loss_agg_mode="token-mean", global_token_count=1, global_seq_count=1,
        options=PolicyLossOptions(clip_ratio_c=1e30),
    )
    # r = exp(500) would be inf; clamped it is exp(20)
    assert loss.item() == pytest.approx(math.exp(20), rel=1e-6)


def test_gspo_sequence_ratio_and_token_gradient():
    # log-ratios 0.2, 0.4 (third token masked, 9) -> sequence log-ratio 0.3, s = e^0.3
    old = torch.zeros(1, 3, dtype=torch.float64)
    logprobs = torch.tensor([[0.2, 0.4, 9.0]], dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 0]], dtype=torch.float64)
    kwargs = dict(logprobs=logprobs, old_logprobs=old, response_mask=mask, loss_agg_mode="seq-mean-token-mean",
                  global_token_count=2, global_seq_count=1,
                  options=PolicyLossOptions(clip_ratio_low=0.2, clip_ratio_high=0.2))
    # A = +1: max(-e^0.3, -1.2) = -1.2 on both tokens (clipped, no gradient)
    loss, metrics = compute_policy_loss("gspo", advantages=torch.ones(1, 3, dtype=torch.float64), **kwargs)
    assert loss.item() == pytest.approx(-1.2) and metrics["clip_frac"] == 1.0
    # A = -1: max(e^0.3, 1.2) = e^0.3; d/d logp_t = s (token form), / 2 tokens -> s / 2 per token
    loss, metrics = compute_policy_loss("gspo", advantages=-torch.ones(1, 3, dtype=torch.float64), **kwargs)
    s = math.exp(0.3)
    assert loss.item() == pytest.approx(s) and metrics["clip_frac"] == 0.0
    loss.backward()
    assert torch.allclose(logprobs.grad, torch.tensor([[s / 2, s / 2, 0]], dtype=torch.float64))


def test_reinforce_loss_and_gradient():
    logprobs = torch.tensor([[-0.5, -1.0, -3.0]], requires_grad=True)
    adv = torch.tensor([[2.0, -1.0, 7.0]])
    loss, _ = compute_policy_loss(
        "reinforce", logprobs=logprobs, old_logprobs=logprobs.detach(), advantages=adv,
        response_mask=torch.tensor([[1, 1, 0]]), loss_agg_mode="token-mean", global_token_count=2, global_seq_count=1,
    )
    # -A logp: 1.0, -1.0 -> mean 0;  gradient -A / 2
    assert loss.item() == pytest.approx(0.0)
    loss.backward()
    assert torch.allclose(logprobs.grad, torch.tensor([[-1.0, 0.5, 0.0]]))


def test_unknown_policy_loss_and_mode_are_user_errors():
    x = torch.zeros(1, 1)
    kwargs = dict(logprobs=x, old_logprobs=x, advantages=x, response_mask=x, global_token_count=1, global_seq_count=1)
    with pytest.raises(TandemError, match="valid: ppo_clip, gspo, cispo, clip_cov, kl_cov, reinforce, gpg"):
        compute_policy_loss("dpo", loss_agg_mode="token-mean", **kwargs)
    with pytest.raises(TandemError, match="loss_agg_mode='mean' is unknown"):
        compute_policy_loss("ppo_clip", loss_agg_mode="mean", **kwargs)
    with pytest.raises(TandemError, match="needs a positive horizon"):
        compute_policy_loss("ppo_clip", loss_agg_mode="seq-mean-token-sum-norm", **kwargs)
    with pytest.raises(TypeError, match="clip_ratio_hgh"):  # a misspelt option is refused, never a silent default
        PolicyLossOptions(clip_ratio_hgh=0.28)


def test_every_losss_options_are_fields_of_the_typed_options():
    from dataclasses import fields

    from core.algorithms.policy_loss import _LOSSES, _declared_options

    names = {f.name for f in fields(PolicyLossOptions)}
    for loss in _LOSSES.values():  # a loss given a new option must get its field (and config key) too
        assert set(_declared_options(loss)) <= names, loss.__name__
    assert _declared_options(_LOSSES["ppo_clip"]) == ("clip_ratio_low", "clip_ratio_high", "clip_ratio_c")


def test_aggregation_modes_hand_numbers():
    losses = torch.tensor([[1.0, 2, 3], [4, 5, 6], [7, 8, 9]])
    mask = torch.tensor([[1, 1, 0], [0, 0, 0], [1, 1, 1]])
    counts = loss_counts(mask)
    assert (counts.tokens, counts.sequences) == (5, 2)  # row 1 is fully masked: not a sequence
    # row sums 3 and 24 (row 1 excluded); row means 1.5 and 8
    expected = {
        "token-mean": 27 / 5,
        "seq-mean-token-sum": 27 / 2,
        "seq-mean-token-mean": (1.5 + 8) / 2,
        "seq-mean-token-sum-norm": (3 / 3 + 24 / 3) / 2,  # horizon 3
    }
    for mode, value in expected.items():
        got = aggregate_loss(losses, mask, mode, counts.tokens, counts.sequences, horizon=3)
        assert got.item() == pytest.approx(value), mode


def test_value_loss_clipping():
    # token 1: V_old 1, V 1.5, R 2: clipped V 1.2; errors 0.25 vs 0.64 -> 0.5 * 0.64 = 0.32 (clipped wins)
    # token 2: V_old 1, V 1.1, R 0: inside the clip range; error 1.21 -> 0.605
    # token 3: masked
    values = torch.tensor([[1.5, 1.1, 50.0]], requires_grad=True)
    old = torch.tensor([[1.0, 1.0, 0.0]])
    returns = torch.tensor([[2.0, 0.0, 0.0]])
    loss, metrics = value_loss(values, old, returns, torch.tensor([[1, 1, 0]]), 0.2, "token-mean", 2, 1)
    assert loss.item() == pytest.approx((0.32 + 0.605) / 2)
    assert metrics["vf_clip_frac"] == pytest.approx(0.5)
    loss.backward()
    # token 1 sits on the clip bound (no gradient); token 2: 0.5 * 2 * (1.1 - 0) / 2 tokens
    assert torch.allclose(values.grad, torch.tensor([[0.0, 0.55, 0.0]]))


def test_algorithm_config_validation_names_the_bad_key():
    from dataclasses import replace

    from core.algorithms import check_algorithm_config
    from core.config.schema import AlgorithmConfig

    check_algorithm_config(AlgorithmConfig())
    check_algorithm_config(AlgorithmConfig(kl_estimator="k3+", kl_placement="reward", kl_target=0.1))
    bad = {
        "adv_estimator=ppo is out of range: it must be one of grpo": dict(adv_estimator="ppo"),
        "policy_loss=clip": dict(policy_loss="clip"),
        "loss_agg_mode=sum": dict(loss_agg_mode="sum"),
        "kl_placement=both": dict(kl_placement="both"),
        "kl_estimator=k5": dict(kl_estimator="k5"),
        "kl_target": dict(kl_target=0.1, kl_placement="loss"),
        "clip_ratio_c=0.5": dict(clip_ratio_c=0.5),
        "clip_cov_ratio=0.0": dict(clip_cov_ratio=0.0),  # a rule that lived in config/ranges.py before
    }
    for key, change in bad.items():
        with pytest.raises(TandemError, match=key.replace("(", r"\(")):
            check_algorithm_config(replace(AlgorithmConfig(), **change))


def test_token_sum_has_no_normaliser():
    logprobs, old, adv, mask = _ppo_tokens()
    loss, _ = compute_policy_loss(
        "ppo_clip", logprobs=logprobs, old_logprobs=old, advantages=adv, response_mask=mask,
        loss_agg_mode="token-sum", global_token_count=5, global_seq_count=1,
        options=PolicyLossOptions(clip_ratio_high=0.28),
    )
    assert loss.item() == pytest.approx(3.52)  # the token-mean test's sum, not divided by 5


def test_cispo_weights_every_token_with_the_clipped_ratio():
    logprobs, old, adv, mask = _ppo_tokens()
    loss, metrics = compute_policy_loss(
        "cispo", logprobs=logprobs, old_logprobs=old, advantages=adv, response_mask=mask,
        loss_agg_mode="token-mean", global_token_count=5, global_seq_count=1,
        options=PolicyLossOptions(clip_ratio_high=0.6),
    )
    # ratios 1.5, 0.5, 1.5, 5, 0.5 -> weights clip(r, 0.8, 1.6) = 1.5, 0.8, 1.5, 1.6, 0.8 (3 of 5 clipped)
    # terms -w A log pi: tokens 1/3 and 2/5 have equal log pi and w, opposite A: they cancel; token 4
    # leaves -1.6 * (-1) * (-2 + ln 5)
    assert loss.item() == pytest.approx(1.6 * (math.log(5) - 2) / 5)
    assert metrics["clip_frac"] == pytest.approx(3 / 5)
    loss.backward()
    # d/d log pi = -w A / 5 on every unmasked token: clipping never zeroes a gradient
    assert torch.allclose(logprobs.grad, torch.tensor([[-1.5, -0.8, 1.5, 1.6, 0.8, 0]], dtype=torch.float64) / 5)


def _covariance_tokens():
    # A = 3, -3, 1, 1 (mean 0.5 -> deviations 2.5, -3.5, 0.5, 0.5); log pi = -1, -3, -2, -2 (mean -2 ->
    # deviations 1, -1, 0, 0): covariance terms 2.5, 3.5, 0, 0
    adv = torch.tensor([[3.0, -3.0, 1.0, 1.0]], dtype=torch.float64)
    logprobs = torch.tensor([[-1.0, -3.0, -2.0, -2.0]], dtype=torch.float64, requires_grad=True)
    return logprobs, adv, torch.ones(1, 4, dtype=torch.float64)


def test_clip_cov_cuts_the_gradient_of_high_covariance_tokens():
    logprobs, adv, mask = _covariance_tokens()
    old = logprobs.detach().clone()  # ratio 1: PPO clips nothing
    loss, metrics = compute_policy_loss(
        "clip_cov", logprobs=logprobs, old_logprobs=old, advantages=adv, response_mask=mask,
        loss_agg_mode="token-mean", global_token_count=4, global_seq_count=1,
        options=PolicyLossOptions(clip_cov_ratio=0.5),
    )
    # max(1, int(0.5 * 4)) = 2 tokens to cut; candidates: covariance in (1, 5) -> tokens 1 and 2, both cut
    # kept tokens 3, 4: -A r = -1 each -> (-1 - 1) / 4
    assert loss.item() == pytest.approx(-0.5) and metrics["clip_frac"] == pytest.approx(0.5)
    loss.backward()
    assert torch.allclose(logprobs.grad, torch.tensor([[0, 0, -0.25, -0.25]], dtype=torch.float64))
    # one token to cut among the two candidates: exactly one is cut, at random
    loss, metrics = compute_policy_loss(
        "clip_cov", logprobs=logprobs, old_logprobs=old, advantages=adv, response_mask=mask,
        loss_agg_mode="token-mean", global_token_count=4, global_seq_count=1,
        options=PolicyLossOptions(clip_cov_ratio=0.25),
    )
    # token 1 cut: (3 - 1 - 1) / 4 = 0.25; token 2 cut: (-3 - 1 - 1) / 4 = -1.25
    assert metrics["clip_frac"] == pytest.approx(0.25) and round(loss.item(), 6) in (0.25, -1.25)


def test_kl_cov_penalises_the_top_covariance_tokens():
    logprobs, adv, mask = _covariance_tokens()
    old = logprobs.detach() - torch.tensor([[0.1, -0.2, 0.0, 0.0]], dtype=torch.float64)  # log r = 0.1, -0.2, 0, 0
    loss, metrics = compute_policy_loss(
        "kl_cov", logprobs=logprobs, old_logprobs=old, advantages=adv, response_mask=mask,
        loss_agg_mode="token-mean", global_token_count=4, global_seq_count=1,
        options=PolicyLossOptions(kl_cov_ratio=0.25, kl_cov_coef=2.0),
    )
    # max(1, int(4 * 0.25)) = 1 token: the largest covariance, token 2 (3.5), gets + 2 |log r| = 0.4
    # -A r: -3 e^0.1, 3 e^-0.2 (+ 0.4), -1, -1
    expected = (-3 * math.exp(0.1) + 3 * math.exp(-0.2) + 0.4 - 2) / 4
    assert loss.item() == pytest.approx(expected)
    assert metrics["abs_log_ratio"] == pytest.approx(0.3 / 4)
    loss.backward()
    # token 2: d/d log pi (3 e^(log r) + 2 |log r|) = 3 e^-0.2 - 2 (log r < 0)
    grad = torch.tensor([[-3 * math.exp(0.1), 3 * math.exp(-0.2) - 2, -1, -1]], dtype=torch.float64) / 4
    assert torch.allclose(logprobs.grad, grad)


def test_gpg_loss_is_reinforce():
    logprobs, old, adv, mask = _ppo_tokens()
    common = dict(logprobs=logprobs, old_logprobs=old, advantages=adv, response_mask=mask, loss_agg_mode="token-mean",
                  global_token_count=5, global_seq_count=1)
    assert compute_policy_loss("gpg", **common)[0].item() == compute_policy_loss("reinforce", **common)[0].item()
