"""Biased matrix factorisation ("SVD" in the Funk / Surprise sense), for both tasks.

rating(u, i) = mu + b_u + b_i + p_u . q_i
logit(u, i)  = c_i + p'_u . q'_i       (c_i: the item's ranking bias - its popularity)
hidden(u, i) = [p_u * q_i, p'_u * q'_i]

By default each task has its own factors (``rank_factors`` > 0): "what a user watches"
(ranking) and "how they rate it" (rating) pull shared factors in different directions, and
on ml-latest-small sharing them cost both tasks on the valid part (docs/decisions.md#svd).
``rank_factors=0`` gives the classic shared form, logit = c_i + p_u . q_i.

Prunable structure: rating factors (column k of P and Q) and ranking factors (of P', Q').
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.schema import Schema
from .base import ArchEntry, Group, Output, RecModel


class SVD(RecModel):
    kind = "svd"
    one_pass_score_all = True

    def __init__(self, schema: Schema, *, factors: int, rank_factors: int, init_std: float,
                 rating_mean: float = 0.0, tables=None):
        super().__init__(schema, rating_mean)
        self.factors, self.rank_factors, self.init_std = factors, rank_factors, init_std
        self.user_factors = nn.Embedding(schema.n_users, factors)
        self.item_factors = nn.Embedding(schema.n_items, factors)
        self.user_bias = nn.Embedding(schema.n_users, 1)
        self.item_bias = nn.Embedding(schema.n_items, 1)
        self.item_rank_bias = nn.Embedding(schema.n_items, 1)
        embs = [self.user_factors, self.item_factors]
        if rank_factors:
            self.user_rank_factors = nn.Embedding(schema.n_users, rank_factors)
            self.item_rank_factors = nn.Embedding(schema.n_items, rank_factors)
            embs += [self.user_rank_factors, self.item_rank_factors]
        for e in embs:
            nn.init.normal_(e.weight, std=init_std)
        for e in (self.user_bias, self.item_bias, self.item_rank_bias):
            nn.init.zeros_(e.weight)

    def arch(self) -> dict:
        return {"factors": self.factors, "rank_factors": self.rank_factors,
                "init_std": self.init_std}

    def _rank_tables(self):
        if self.rank_factors:
            return self.user_rank_factors, self.item_rank_factors
        return self.user_factors, self.item_factors

    def forward(self, user, item) -> Output:
        p, q = self.user_factors(user), self.item_factors(item)
        inter = p * q
        rating = (self.rating_mean + self.user_bias(user)[:, 0] + self.item_bias(item)[:, 0]
                  + inter.sum(1))
        if self.rank_factors:
            rinter = self.user_rank_factors(user) * self.item_rank_factors(item)
            hidden = torch.cat([inter, rinter], 1)
        else:
            rinter, hidden = inter, inter
        logit = self.item_rank_bias(item)[:, 0] + rinter.sum(1)
        return Output(rating, logit, hidden)

    def pair_logits(self, user, item):
        pu, qi = self._rank_tables()
        return self.item_rank_bias(item)[:, 0] + (pu(user) * qi(item)).sum(1)

    def score_all(self, users, items=None):
        pu, qi = self._rank_tables()
        q = qi.weight if items is None else qi(items)
        c = self.item_rank_bias.weight[:, 0] if items is None else self.item_rank_bias(items)[:, 0]
        return pu(users) @ q.T + c

    def catalogue_user_modules(self) -> list[str]:
        return ["user_rank_factors" if self.rank_factors else "user_factors"]

    def task_params(self):
        if not self.rank_factors:
            return None
        names = [n for n, _ in self.named_parameters()]
        ranking = [n for n in names if "rank" in n]
        return {"rating": [n for n in names if n not in ranking], "ranking": ranking}

    def lookup_rows(self, user, item):
        rows = [(self.user_factors, user), (self.item_factors, item), (self.user_bias, user),
                (self.item_bias, item), (self.item_rank_bias, item)]
        if self.rank_factors:
            rows += [(self.user_rank_factors, user), (self.item_rank_factors, item)]
        return rows

    def structure(self) -> list[Group]:
        idx = torch.arange(self.factors).unsqueeze(1)
        groups = [Group("factors", "mf_factor", self.factors,
                        [("user_factors.weight", 1, idx), ("item_factors.weight", 1, idx)],
                        acts=[("user_factors", idx), ("item_factors", idx)],
                        arch=[ArchEntry("factors")], hidden=idx, degree=2)]
        if self.rank_factors:
            ridx = torch.arange(self.rank_factors).unsqueeze(1)
            groups.append(Group("rank_factors", "mf_factor", self.rank_factors,
                                [("user_rank_factors.weight", 1, ridx),
                                 ("item_rank_factors.weight", 1, ridx)],
                                acts=[("user_rank_factors", ridx), ("item_rank_factors", ridx)],
                                arch=[ArchEntry("rank_factors")], hidden=self.factors + ridx,
                                degree=2))
        return groups
