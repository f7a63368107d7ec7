"""The DPO loss against values worked out by hand."""

import math

import pytest
import torch

from foresight.align.dpo import dpo_loss


def t(*v):
    return torch.tensor(v, dtype=torch.float64)


def test_sigmoid_loss_rewards_and_accuracy_match_a_hand_computation():
    # pair 1: policy prefers chosen by 2 nats more than the reference does; pair 2: by -1
    out = dpo_loss(t(-10.0, -5.0), t(-12.0, -6.0), t(-11.0, -5.0), t(-11.0, -7.0), beta=0.1)
    z1, z2 = 0.1 * 2.0, 0.1 * -1.0
    assert out.loss.item() == pytest.approx((math.log1p(math.exp(-z1)) + math.log1p(math.exp(-z2))) / 2)
    assert out.chosen_rewards.tolist() == pytest.approx([0.1, 0.0])
    assert out.rejected_rewards.tolist() == pytest.approx([-0.1, 0.1])
    assert out.accuracy == 0.5 and out.margin == pytest.approx((0.2 - 0.1) / 2)


def test_label_smoothing_and_ipo():
    z = 0.5 * 3.0
    smoothed = dpo_loss(t(-1.0), t(-4.0), t(0.0), t(0.0), beta=0.5, label_smoothing=0.1)
    assert smoothed.loss.item() == pytest.approx(0.9 * math.log1p(math.exp(-z)) + 0.1 * math.log1p(math.exp(z)))
    ipo = dpo_loss(t(-1.0), t(-4.0), t(0.0), t(0.0), beta=0.5, kind="ipo")
    assert ipo.loss.item() == pytest.approx((3.0 - 1 / (2 * 0.5)) ** 2)


def test_the_gradient_raises_chosen_and_lowers_rejected():
    chosen, rejected = t(-5.0).requires_grad_(), t(-5.0).requires_grad_()
    dpo_loss(chosen, rejected, t(-5.0), t(-5.0), beta=0.1).loss.backward()
    assert chosen.grad.item() == pytest.approx(-0.05) and rejected.grad.item() == pytest.approx(0.05)  # beta/2


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="hinge"):
        dpo_loss(t(0.0), t(0.0), t(0.0), t(0.0), kind="hinge")
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(t(0.0), t(0.0), t(0.0), t(0.0), beta=0.0)
