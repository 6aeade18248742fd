"""A member whose users and items are fixed vectors: what an exported graph holds.

LightGCN computes its vectors by propagating over the train graph and SASRec computes a
user's from their history; neither of those traces into an ONNX graph worth shipping (a
sparse product over the whole graph, or a transformer over every user's history, on each
request). Their `frozen()` computes every known user's and item's vectors once and returns
this model, whose outputs are a few gathers and a product:

rating(u, i) = mu + b_u + b_i + r_u . r_i          logit(u, i) = c_i + e_u . e_i

It answers exactly what the model it was frozen from answers (tests check it), for export
only: it is never trained, saved or pruned.
"""
from __future__ import annotations

import torch

from .base import Output, RecModel


class FrozenDot(RecModel):
    one_pass_score_all = True

    def __init__(self, model: RecModel, *, user_rank, item_rank, item_rank_bias, user_rate,
                 item_rate, user_bias, item_bias):
        super().__init__(model.schema, float(model.rating_mean))
        self.kind = model.kind
        for name, t in (("user_rank", user_rank), ("item_rank", item_rank),
                        ("item_rank_bias", item_rank_bias), ("user_rate", user_rate),
                        ("item_rate", item_rate), ("user_bias", user_bias),
                        ("item_bias", item_bias)):
            self.register_buffer(name, t.detach().clone().contiguous())

    def arch(self) -> dict:
        return {}

    def forward(self, user, item) -> Output:
        pr, qr = self.user_rate[user], self.item_rate[item]
        p, q = self.user_rank[user], self.item_rank[item]
        rating = self.rating_mean + self.user_bias[user] + self.item_bias[item] + (pr * qr).sum(1)
        return Output(rating, self.item_rank_bias[item] + (p * q).sum(1),
                      torch.cat([pr * qr, p * q], 1))

    def pair_logits(self, user, item):
        return self.item_rank_bias[item] + (self.user_rank[user] * self.item_rank[item]).sum(1)

    def score_all(self, users, items=None):
        out = self.user_rank[users] @ self.item_rank.T + self.item_rank_bias
        return out if items is None else out[:, items]
