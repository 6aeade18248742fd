"""Distillation losses.

- rating: MSE between student and teacher rating predictions;
- ranking (listwise): KL(teacher || student) between softmax distributions over every item
  the user did not rate in train (`catalogue_kl`: one [users, items] product for a
  dot-product student), or over a per-user candidate list holding the teacher's top-ranked
  unseen items plus random items (`listwise_kl`); scaled by T^2 as in Hinton et al. (2015)
  so gradients keep their size across temperatures;
- ranking (top list): the teacher's top-K unseen items, in the teacher's order, under a
  Plackett-Luce model of the student's scores over the user's unseen items, each position
  weighted by 1 / log2(rank + 1) - the head of the list counts most (relaxed ranking
  distillation, Kang et al. 2020, with a rank discount; `top_list_distill`);
- feature: MSE between a learned linear projection of the student's hidden representation
  and the teacher's (PCA-reduced) hidden representation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def rating_distill(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(student, teacher)


def listwise_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0
                ) -> torch.Tensor:
    """student, teacher: [users, list] scores."""
    t = F.log_softmax(teacher / temperature, dim=1)
    s = F.log_softmax(student / temperature, dim=1)
    return (t.exp() * (t - s)).sum(1).mean() * temperature ** 2


def catalogue_kl(student: torch.Tensor, teacher_probs: torch.Tensor,
                 teacher_neg_entropy: torch.Tensor, seen_rows: torch.Tensor,
                 seen_cols: torch.Tensor, temperature: float = 1.0, head=None) -> torch.Tensor:
    """Mean over users of T^2 KL(teacher || student) over each user's unseen items.

    student: [users, items] scores; teacher_probs: the teacher's softmax at ``temperature``
    over the unseen items (0 on seen ones); teacher_neg_entropy: sum p log p per user;
    (seen_rows, seen_cols): the seen (user row, item) pairs. ``head``: (items [users, M],
    unseen [users, M], tail_each [users]) when ``teacher_probs`` holds only those items'
    probabilities and every other unseen item has ``tail_each``
    (`pakd.distill.signals.head_distribution`)."""
    return catalogue_terms(student, teacher_probs, teacher_neg_entropy, seen_rows, seen_cols,
                           temperature, head)[1]


def catalogue_terms(student: torch.Tensor, teacher_probs: torch.Tensor,
                    teacher_neg_entropy: torch.Tensor, seen_rows: torch.Tensor,
                    seen_cols: torch.Tensor, temperature: float = 1.0, head=None):
    """(log sum exp of ``student`` over every item per user - the labels' full-softmax
    normaliser, from the same exp pass when T = 1, else None; `catalogue_kl`).

    With Z the student's normaliser over unseen items, KL = sum p log p - sum p z + log Z
    (z = scores / T), and log Z comes from one exp pass over the catalogue minus the few
    seen entries - several times fewer passes over the [users, items] matrix than masking
    and two log-softmaxes. With ``head``, sum p z = (head's p z) + tail_each * (z summed
    over the unseen items outside the head)."""
    z = student / temperature if temperature != 1.0 else student
    m = z.detach().max(1).values
    e = torch.exp(z - m[:, None])
    seen = torch.zeros(len(z), dtype=e.dtype).index_add(0, seen_rows, e[seen_rows, seen_cols])
    total = e.sum(1)
    log_z = m + torch.log((total - seen).clamp(min=1e-30))
    if head is None:
        cross = (teacher_probs * z).sum(1)
    else:
        items, unseen, tail_each = head
        zh = z.gather(1, items)
        z_seen = torch.zeros(len(z), dtype=z.dtype).index_add(0, seen_rows,
                                                              z[seen_rows, seen_cols])
        outside = z.sum(1) - z_seen - (zh * unseen).sum(1)
        cross = (teacher_probs * zh).sum(1) + tail_each * outside
    kl = teacher_neg_entropy - cross + log_z
    lse = m + torch.log(total) if temperature == 1.0 else None
    return lse, kl.mean() * temperature ** 2


def feature_distill(projected: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(projected, teacher)


def top_list_distill(student: torch.Tensor, top: torch.Tensor, seen_rows: torch.Tensor,
                     seen_cols: torch.Tensor) -> torch.Tensor:
    """Mean over users of the rank-discounted Plackett-Luce negative log-likelihood of the
    teacher's ordered top list ``top`` [users, K] (unseen items, best first) under the
    student's scores [users, items]: position k contributes
    w_k * -(s_k - log(sum over the list from k on of e^s + sum over the unseen items outside
    the list of e^s)), w_k = 1 / log2(k + 1), normalised to sum to one. Items outside the
    list are not ordered among themselves, only below it (relaxed ranking distillation)."""
    m = student.detach().max(1).values
    e = torch.exp(student - m[:, None])
    seen = torch.zeros(len(e), dtype=e.dtype).index_add(0, seen_rows, e[seen_rows, seen_cols])
    et = e.gather(1, top)
    outside = (e.sum(1) - seen - et.sum(1)).clamp(min=0)
    suffix = torch.flip(torch.cumsum(torch.flip(et, [1]), 1), [1])       # sum from k on
    log_den = m[:, None] + torch.log((suffix + outside[:, None]).clamp(min=1e-30))
    nll = log_den - student.gather(1, top)
    k = top.shape[1]
    w = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=student.dtype))
    return (nll * (w / w.sum())).sum(1).mean()
