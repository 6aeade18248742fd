"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"): an item-item
model with a closed form, a strong ranker on MovieLens-like data.

score(u, i) = sum over the items j the user rated in train of B[j, i], where
B = argmin ||X - X B||^2 + lam ||B||^2 subject to diag(B) = 0, i.e. with
P = (X'X + lam I)^-1:  B = -P / diag(P) (column-wise), diag(B) = 0.
X is the binary users x items matrix of the train part.

It ranks only: its rating output is the train mean (the ensemble gives it the task
``ranking``), and it has no prunable structure. Its weights are items^2 numbers, so the
catalogue it accepts is bounded (``max_items``); the user histories it scores from are
stored with the weights (CSR), so a saved EASE needs nothing else.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data.schema import Schema
from ..errors import PakdError
from ..csr import csr_take
from .base import RankingOnly


def ease_weights(X, lam: float) -> torch.Tensor:
    """B for the binary scipy sparse matrix ``X`` [users, items] (float64 inside). With
    fewer users than items the inverse comes from the users x users system (Woodbury:
    (X'X + lam I)^-1 = (I - X' (XX' + lam I)^-1 X) / lam), else from the items x items one."""
    n_users, n_items = X.shape
    if n_users < n_items:
        Xd = torch.from_numpy(X.toarray()).double()
        inner = Xd @ Xd.T
        inner.diagonal().add_(lam)
        P = -(Xd.T @ torch.linalg.solve(inner, Xd))
        P.diagonal().add_(1.0)
        P /= lam
    else:
        G = torch.from_numpy((X.T @ X).toarray()).double()
        G.diagonal().add_(lam)
        P = torch.cholesky_inverse(torch.linalg.cholesky(G))
    B = -P / P.diagonal()
    B.diagonal().zero_()
    return B.float()


class EASE(RankingOnly):
    kind = "ease"
    one_pass_score_all = True

    def __init__(self, schema: Schema, *, lam: float, history: int, rating_mean: float = 0.0,
                 tables=None):
        super().__init__(schema, rating_mean)
        self.lam, self.history = float(lam), int(history)
        self.weight = nn.Parameter(torch.zeros(schema.n_items, schema.n_items),
                                   requires_grad=False)
        self.register_buffer("hist_indptr", torch.zeros(schema.n_users + 1, dtype=torch.long))
        self.register_buffer("hist_items", torch.zeros(self.history, dtype=torch.long))

    def arch(self) -> dict:
        return {"lam": self.lam, "history": self.history}

    @torch.no_grad()
    def set_history(self, indptr: np.ndarray, items: np.ndarray) -> None:
        if len(items) != self.history:
            raise ValueError("history size differs from the architecture's")
        self.hist_indptr.copy_(torch.from_numpy(np.asarray(indptr, dtype=np.int64)))
        self.hist_items.copy_(torch.from_numpy(np.asarray(items, dtype=np.int64)))

    @torch.no_grad()
    def fit(self, X, lam: float) -> "EASE":
        """The closed form for ridge ``lam`` on the binary train matrix ``X`` (scipy CSR,
        users x items), whose rows become the histories it scores from."""
        self.set_history(X.indptr, X.indices)
        self.weight.copy_(ease_weights(X, lam))
        self.lam = float(lam)
        return self

    def user_rows(self, users: torch.Tensor) -> torch.Tensor:
        """Dense binary train rows [len(users), n_items]."""
        rows, cols = csr_take(self.hist_indptr, self.hist_items, users)
        X = torch.zeros(len(users), self.schema.n_items)
        X[rows, cols] = 1.0
        return X

    def pair_logits(self, user, item):
        """Sum of B[j, item] over the user's train items j (a gather, not a dense row)."""
        pair, j = csr_take(self.hist_indptr, self.hist_items, user)
        vals = self.weight[j, item[pair]]
        return torch.zeros(len(user), dtype=vals.dtype).index_add_(0, pair, vals)

    def score_all(self, users, items=None):
        X = self.user_rows(users)
        return X @ (self.weight if items is None else self.weight[:, items])


def check_catalogue(count: int, limit: int, member: str = "ease", side: str = "items") -> None:
    """EASE and the knn members hold items^2 weights, uknn users^2: stop before fitting
    ``count`` ``side`` (items, or users for uknn) beyond the member's limit."""
    if count > limit:
        gb = count ** 2 * 4 / 1e9
        what = "catalogue" if side == "items" else "split"
        fix = ("shrink the catalogue with --min-item-ratings" if side == "items" else
               "keep fewer users with --min-user-ratings")
        flag = f"--{member.replace('_', '-')}-max-{side}"
        raise PakdError(f"{member}: the {what} has {count:,} {side}, above "
                        f"{flag} {limit:,} (its weights would take {gb:.1f} "
                        f"GB, more with the solve); leave {member} out of "
                        f"--algorithms/--models, raise the limit if the memory is there, or "
                        f"{fix}")
