"""Distillation losses on hand-made tensors."""
import math

import pytest
import torch

from pakd.distill.losses import catalogue_kl, feature_distill, listwise_kl, rating_distill
from pakd.distill.signals import teacher_distribution


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


def test_catalogue_kl_is_the_kl_over_unseen_items_by_brute_force():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(3, 7, generator=g), torch.randn(3, 7, generator=g) * 2
    seen = torch.zeros(3, 7, dtype=torch.bool)
    seen[0, [1, 4]] = True
    seen[2, 6] = True
    want = 0.0
    for u in range(3):
        keep = ~seen[u]
        p = torch.softmax(t[u, keep] / 1.5, 0)
        q = torch.softmax(s[u, keep] / 1.5, 0)
        want += float((p * torch.log(p / q)).sum())
    probs, neg_entropy = teacher_distribution(t, seen, 1.5)
    rows, cols = seen.nonzero(as_tuple=True)
    got = catalogue_kl(s.requires_grad_(), probs, neg_entropy, rows, cols, temperature=1.5)
    assert got.item() == pytest.approx(1.5 ** 2 * want / 3, rel=1e-5)
    got.backward()
    assert torch.isfinite(s.grad).all() and s.grad[seen].abs().max() < 1e-7
