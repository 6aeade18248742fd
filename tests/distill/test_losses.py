"""Distillation losses on hand-made tensors."""
import math

import pytest
import torch

from pakd.distill.losses import feature_distill, listwise_kl, rating_distill


def test_listwise_kl_zero_iff_same_distribution():
    s = torch.tensor([[1.0, 2.0, 3.0]])
    assert listwise_kl(s, s + 5.0).item() == pytest.approx(0.0, abs=1e-7)  # shift-invariant
    assert listwise_kl(s, s.flip(1)).item() > 0.1


def test_listwise_kl_hand_value_and_temperature_scaling():
    t, s = torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([[0.0, 0.0]])
    p = torch.tensor([0.25, 0.75])                     # teacher softmax
    want = float((p * torch.log(p / 0.5)).sum())
    assert listwise_kl(s, t).item() == pytest.approx(want, rel=1e-6)
    # T^2 scaling: at T = 2 the logits are halved and the loss multiplied by 4
    pt = torch.softmax(t / 2, 1)[0]
    want2 = 4 * float((pt * torch.log(pt / 0.5)).sum())
    assert listwise_kl(s, t, temperature=2.0).item() == pytest.approx(want2, rel=1e-6)


def test_rating_and_feature_distill_are_mse():
    a, b = torch.tensor([1.0, 2.0]), torch.tensor([2.0, 4.0])
    assert rating_distill(a, b).item() == pytest.approx(2.5)
    assert feature_distill(a[None], b[None]).item() == pytest.approx(2.5)
