"""Distillation losses on hand-made tensors."""
import math

import pytest
import torch

from pakd.distill.losses import catalogue_kl, feature_distill, listwise_kl, rating_distill
from pakd.distill.signals import head_distribution, teacher_distribution


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


def test_catalogue_head_kl_is_the_kl_to_the_head_and_even_tail_by_brute_force():
    """The teacher kept as its M likeliest unseen items, the rest of its mass spread evenly
    over the other unseen items: the loss is KL(that distribution || student) exactly, and
    with M covering the catalogue it is the exact catalogue KL, gradient included."""
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(3, 9, generator=g), torch.randn(3, 9, generator=g) * 2
    seen = torch.zeros(3, 9, dtype=torch.bool)
    seen[0, [1, 4]] = True
    seen[1, [0, 2, 3, 5, 6, 7]] = True            # 3 unseen items: fewer than M = 4
    rows, cols = seen.nonzero(as_tuple=True)
    items, p, unseen, tail_each, neg_entropy = head_distribution(t, seen, 1.5, 4)
    want = 0.0
    for u in range(3):
        keep = ~seen[u]
        full = torch.softmax(t[u] / 1.5 + torch.where(keep, 0.0, -torch.inf), 0)
        head = set(torch.topk(full, 4).indices.tolist()) & set(keep.nonzero().flatten().tolist())
        rest = [i for i in range(9) if keep[i] and i not in head]
        q = torch.zeros(9)
        for i in head:
            q[i] = full[i]
        for i in rest:
            q[i] = (1 - sum(float(full[j]) for j in head)) / len(rest)
        assert abs(float(q.sum()) - 1) < 1e-6
        st = torch.log_softmax(s[u, keep] / 1.5, 0)
        qk = q[keep]
        want += float((qk * (torch.log(qk) - st)).sum())
    assert float(tail_each[1]) == 0 and int(unseen[1].sum()) == 3
    got = catalogue_kl(s.clone().requires_grad_(), p, neg_entropy, rows, cols, 1.5,
                       head=(items, unseen, tail_each))
    assert got.item() == pytest.approx(1.5 ** 2 * want / 3, rel=1e-5)

    exact_s = s.clone().requires_grad_()
    probs, ne = teacher_distribution(t, seen, 1.5)
    exact = catalogue_kl(exact_s, probs, ne, rows, cols, 1.5)
    exact.backward()
    whole_s = s.clone().requires_grad_()
    items, p, unseen, tail_each, neg_entropy = head_distribution(t, seen, 1.5, 9)
    whole = catalogue_kl(whole_s, p, neg_entropy, rows, cols, 1.5,
                         head=(items, unseen, tail_each))
    whole.backward()
    assert whole.item() == pytest.approx(exact.item(), rel=1e-6)
    assert torch.allclose(whole_s.grad, exact_s.grad, atol=1e-6)
