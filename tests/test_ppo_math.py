"""PPO's arithmetic against values worked out by hand, and the KL estimators against the exact KL."""

import math

import pytest
import torch

from foresight.align.ppo_math import (AdaptiveKLController, gae, kl_per_token, policy_loss, token_rewards,
                                      value_loss, whiten)


def test_gae_matches_a_hand_computation():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.6, 0.7]])
    adv, ret = gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=0.9)
    # t=2: 1 - 0.7 = 0.3; t=1: (0.7 - 0.6) + 0.9 * 0.3 = 0.37; t=0: (0.6 - 0.5) + 0.9 * 0.37 = 0.433
    assert torch.allclose(adv, torch.tensor([[0.433, 0.37, 0.3]]), atol=1e-6)
    assert torch.allclose(ret, torch.tensor([[0.933, 0.97, 1.0]]), atol=1e-6)


def test_gae_ends_each_response_at_its_last_real_token():
    # The padded value (9.9) must not leak into the last real token's advantage.
    rewards = torch.tensor([[0.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.6, 9.9]])
    adv, ret = gae(rewards, values, torch.tensor([[1.0, 1.0, 0.0]]), gamma=1.0, lam=0.9)
    assert torch.allclose(adv, torch.tensor([[0.46, 0.4, 0.0]]), atol=1e-6)
    assert ret[0, 2] == 0


def test_gae_with_lambda_one_is_the_discounted_return_minus_the_value():
    rewards = torch.tensor([[1.0, 2.0, -1.0]])
    values = torch.tensor([[0.3, -0.2, 0.1]])
    adv, ret = gae(rewards, values, torch.ones(1, 3), gamma=0.5, lam=1.0)
    discounted = torch.tensor([[1 + 0.5 * 2 + 0.25 * -1, 2 + 0.5 * -1, -1.0]])
    assert torch.allclose(ret, discounted, atol=1e-6)
    assert torch.allclose(adv, discounted - values, atol=1e-6)


def test_clipped_policy_loss_matches_a_hand_computation():
    ratio = torch.tensor([[1.5, 0.5, 1.1, 0.5, 3.0]])
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]])  # the last token is padding and must not count
    old = torch.zeros(1, 5)
    out = policy_loss(old + ratio.log(), old, adv, mask, clip=0.2)
    # max(-A r, -A clip(r)): -1.2 (clipped), -0.5, 1.1, 0.8 (clipped)
    assert out.loss.item() == pytest.approx((-1.2 - 0.5 + 1.1 + 0.8) / 4, abs=1e-6)
    assert out.clip_fraction.item() == pytest.approx(0.5)
    # d = log r; k3 = e^-d - 1 + d = 1/r - 1 + log r
    expected_kl = sum(1 / r - 1 + math.log(r) for r in (1.5, 0.5, 1.1, 0.5)) / 4
    assert out.approx_kl.item() == pytest.approx(expected_kl, abs=1e-6)


def test_policy_loss_gradient_vanishes_where_the_ratio_is_clipped():
    logprobs = torch.log(torch.tensor([[1.5, 0.9]])).requires_grad_()
    out = policy_loss(logprobs, torch.zeros(1, 2), torch.tensor([[1.0, 1.0]]), torch.ones(1, 2), clip=0.2)
    out.loss.backward()
    assert logprobs.grad[0, 0] == 0  # r = 1.5 > 1.2 with A > 0: clipped, no push further
    assert logprobs.grad[0, 1] == pytest.approx(-0.9 / 2)  # d(-A r)/d log r = -A r, over 2 tokens


def test_clipped_value_loss_matches_a_hand_computation():
    values, old = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.5]])
    returns = torch.tensor([[2.0, 0.4]])
    loss, clipped_share = value_loss(values, old, returns, torch.ones(1, 2), clip=0.2)
    # token 0: max((1-2)^2, (0.7-2)^2) = 1.69; token 1: max((0-0.4)^2, (0.3-0.4)^2) = 0.16
    assert loss.item() == pytest.approx(0.5 * (1.69 + 0.16) / 2, abs=1e-6)
    assert clipped_share.item() == pytest.approx(0.5)


def test_kl_estimators_average_to_the_exact_kl():
    torch.manual_seed(0)
    p = torch.softmax(torch.randn(50), 0)
    q = torch.softmax(torch.randn(50), 0)
    exact = (p * (p.log() - q.log())).sum()
    for estimator in ("k1", "k3"):
        # the expectation under p, summed over the vocabulary: exactly KL(p || q)
        per_token = kl_per_token(p.log(), q.log(), estimator)
        assert (p * per_token).sum().item() == pytest.approx(exact.item(), rel=1e-5)
        # and a sample mean of 200,000 draws from p comes near it
        draws = torch.multinomial(p, 200_000, replacement=True)
        assert per_token[draws].mean().item() == pytest.approx(exact.item(), rel=0.05)
    assert (kl_per_token(p.log(), q.log(), "k3") >= 0).all()
    assert (kl_per_token(p.log(), q.log(), "k1") < 0).any()
    with pytest.raises(ValueError, match="k2"):
        kl_per_token(p.log(), q.log(), "k2")


def test_token_rewards_put_the_score_on_the_last_real_token():
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.5, 0.5, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    r = token_rewards(torch.tensor([1.0, 2.0]), kl, mask, kl_coef=0.1)
    assert torch.allclose(r, torch.tensor([[-0.01, -0.02, 0.97], [-0.05, 1.95, 0.0]]), atol=1e-6)


def test_whiten_uses_real_tokens_only():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    s = math.sqrt(2 / 3)
    assert torch.allclose(whiten(x, mask), torch.tensor([[-1 / s, 0.0, 1 / s, 0.0]]), atol=1e-5)
    assert torch.allclose(whiten(x, mask, shift_mean=False), torch.tensor([[2 - 1 / s, 2.0, 2 + 1 / s, 0.0]]),
                          atol=1e-5)


def test_adaptive_kl_coefficient_moves_toward_the_target():
    c = AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    assert c.update(kl=12.0, n=256) == pytest.approx(0.1 * (1 + 0.2 * 256 / 10_000))  # error clipped to +0.2
    before = c.value
    assert c.update(kl=3.0, n=256) == pytest.approx(before * (1 - 0.2 * 256 / 10_000))  # -0.5 clipped to -0.2
    assert c.update(kl=6.0, n=256) == pytest.approx(c.value)  # on target: unchanged
    with pytest.raises(ValueError):
        AdaptiveKLController(0.1, target=0.0, horizon=10)
