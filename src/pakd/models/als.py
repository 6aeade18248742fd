"""Implicit ALS (Hu, Koren & Volinsky 2008), written in torch: a ranking member.

Every (user, item) cell has a preference p (1 if the user rated the item in train, else 0)
and a confidence c = 1 + alpha * p; the factors minimise
sum c (p - x_u . y_i)^2 + reg (|x_u|^2 + |y_i|^2), alternating exact solves:
x_u = (Y'Y + alpha Y_u'Y_u + reg I)^-1 (1 + alpha) Y_u' 1, with Y_u the rows of the items
the user rated (the whole-catalogue Y'Y is shared, so a solve costs only the user's items),
and the same for items. It ranks only (rating output: the train mean) and is not pruned.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data.schema import Schema
from .base import RankingOnly


def _half_step(indptr: np.ndarray, cols: np.ndarray, other: torch.Tensor, alpha: float,
               reg: float, chunk_entries: int = 40_000) -> torch.Tensor:
    """New factors of every row of a CSR matrix given the other side's factors (float64)."""
    n_rows, k = len(indptr) - 1, other.shape[1]
    base = other.T @ other + reg * torch.eye(k, dtype=other.dtype)
    out = torch.zeros(n_rows, k, dtype=other.dtype)
    r0 = 0
    while r0 < n_rows:
        r1 = r0 + 1
        while r1 < n_rows and indptr[r1 + 1] - indptr[r0] <= chunk_entries:
            r1 += 1
        lens = torch.from_numpy(np.diff(indptr[r0:r1 + 1])).long()
        v = other[torch.from_numpy(cols[indptr[r0]:indptr[r1]]).long()]
        outer = torch.segment_reduce(v[:, :, None] * v[:, None, :], "sum", lengths=lens, axis=0)
        rhs = (1 + alpha) * torch.segment_reduce(v, "sum", lengths=lens, axis=0)
        out[r0:r1] = torch.linalg.solve(base + alpha * outer, rhs.unsqueeze(2)).squeeze(2)
        r0 = r1
    return out


def ials(X, factors: int, reg: float, alpha: float, iterations: int,
         seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(user factors, item factors) of implicit ALS on the binary scipy CSR matrix ``X``."""
    g = torch.Generator().manual_seed(seed)
    n_users, n_items = X.shape
    users = torch.randn(n_users, factors, generator=g, dtype=torch.float64) * 0.01
    items = torch.randn(n_items, factors, generator=g, dtype=torch.float64) * 0.01
    Xt = X.T.tocsr()
    for _ in range(iterations):
        users = _half_step(X.indptr, X.indices, items, alpha, reg)
        items = _half_step(Xt.indptr, Xt.indices, users, alpha, reg)
    return users.float(), items.float()


class ALS(RankingOnly):
    kind = "als"
    one_pass_score_all = True

    def __init__(self, schema: Schema, *, factors: int, reg: float, alpha: float,
                 rating_mean: float = 0.0, tables=None):
        super().__init__(schema, rating_mean)
        self.factors, self.reg, self.alpha = int(factors), float(reg), float(alpha)
        self.user_factors = nn.Parameter(torch.zeros(schema.n_users, factors),
                                         requires_grad=False)
        self.item_factors = nn.Parameter(torch.zeros(schema.n_items, factors),
                                         requires_grad=False)

    def arch(self) -> dict:
        return {"factors": self.factors, "reg": self.reg, "alpha": self.alpha}

    @torch.no_grad()
    def fit(self, X, reg: float, iterations: int, seed: int = 0) -> "ALS":
        """``iterations`` alternating solves with regularisation ``reg`` on the binary train
        matrix ``X`` (scipy CSR, users x items), from a ``seed``-ed initialisation."""
        u, v = ials(X, self.factors, reg, self.alpha, iterations, seed=seed)
        self.user_factors.copy_(u)
        self.item_factors.copy_(v)
        self.reg = float(reg)
        return self

    def pair_logits(self, user, item):
        return (self.user_factors[user] * self.item_factors[item]).sum(1)

    def score_all(self, users, items=None):
        q = self.item_factors if items is None else self.item_factors[items]
        return self.user_factors[users] @ q.T
