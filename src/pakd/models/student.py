"""The default student, ``lightweight_model``: biased MF over field-aware embeddings plus a
small MLP, serving both tasks.

user vector  p_u = P[u] + mean of the user's side-field vectors
item vector  q_i = Q[i] + mean of the item's side-field vectors (genres, year, tags)
rating = mu + b_u + b_i + p_u . q_i + w_r . h
logit  = c_i + p_u . q_i + w_l . h,        h = MLP([p_u, q_i, p_u * q_i])

Why this shape: the dot product is what ranks a whole catalogue fast (one matrix product);
the side fields let rare items borrow strength; the MLP lets the student copy non-linear
teacher behaviour that a pure dot product cannot. Every field keeps its own width only
through the shared factor dimension, so a factor is one prunable unit across all tables.

Prunable structure: factors (column k of every embedding table and the MLP's three input
columns for k) and MLP neurons.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.schema import Schema
from .base import FieldEmbedding, Group, TokenTables, Output, RecModel, linear_layers, mlp, neuron_groups


class LightweightStudent(RecModel):
    kind = "lightweight_model"

    def __init__(self, schema: Schema, factors: int = 32, hidden: list[int] | None = None,
                 side_fields: bool = True, rating_mean: float = 0.0, tables=None):
        super().__init__(schema, rating_mean)
        self.factors = factors
        self.hidden_sizes = list(hidden if hidden is not None else [32])
        self.side_fields = side_fields
        names = None if side_fields else ["user_id", "item_id"]
        self.tokens = TokenTables(schema, tables, fields=names)
        self.embedding = FieldEmbedding(schema, factors, self.tokens, init_std=0.05, fields=names)
        self.bias = FieldEmbedding(schema, 1, self.tokens, init_std=0.0,
                                   fields=["user_id", "item_id"])
        self.rank_bias = FieldEmbedding(schema, 1, self.tokens, init_std=0.0, fields=["item_id"])
        self.mlp = mlp([3 * factors] + self.hidden_sizes)
        out_in = self.hidden_sizes[-1] if self.hidden_sizes else 0
        self.head = nn.Linear(out_in, 2) if out_in else None
        if self.head is not None:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def arch(self) -> dict:
        return {"factors": self.factors, "hidden": self.hidden_sizes,
                "side_fields": self.side_fields}

    def _vectors(self, user, item):
        u, i = self.embedding.sides(user, item)          # [B, Fu, K], [N, Fi, K]
        return u.sum(1) if u.shape[1] == 1 else u[:, 0] + u[:, 1:].mean(1), \
            i.sum(1) if i.shape[1] == 1 else i[:, 0] + i[:, 1:].mean(1)

    def forward(self, user, item) -> Output:
        p, q = self._vectors(user, item)
        dot = (p * q).sum(1)
        b = self.bias(user, item).sum((1, 2))
        c = self.rank_bias(user, item)[:, 0, 0]
        hid = torch.cat([p, q, p * q], 1)
        extra = torch.zeros(len(user), 2)
        if self.head is not None:
            hid = self.mlp(hid)
            extra = self.head(hid)
        return Output(self.rating_mean + b + dot + extra[:, 0], c + dot + extra[:, 1], hid)

    def score_all(self, users, items=None):
        """User and item vectors once, then a matrix product (plus the MLP on pairs)."""
        items = torch.arange(self.schema.n_items) if items is None else items
        p, q = self._vectors(users, items)                       # [B, K], [N, K]
        c = self.rank_bias.sides(users[:0], items)[1][:, 0, 0]    # [N]
        scores = p @ q.T + c
        if self.head is None:
            return scores
        n, k = q.shape
        step = max(1, 131072 // max(1, n))
        w = self.head.weight[1]
        for s in range(0, len(users), step):
            pb = p[s:s + step, None, :].expand(-1, n, k)
            qb = q[None].expand(len(pb), n, k)
            hid = self.mlp(torch.cat([pb, qb, pb * qb], 2))
            scores[s:s + step] += hid @ w + self.head.bias[1]
        return scores

    def lookup_rows(self, user, item):
        return (self.embedding.lookup_rows(user, item) + self.bias.lookup_rows(user, item)
                + self.rank_bias.lookup_rows(user, item))

    def structure(self) -> list[Group]:
        k = self.factors
        f = torch.arange(k).unsqueeze(1)
        sl = [(f"embedding.emb.{n}.weight", 1, f) for n in self.embedding.emb]
        if self.hidden_sizes:
            first = linear_layers(self.mlp)[0][0]
            sl.append((f"mlp.{first}.weight", 1, torch.cat([f, f + k, f + 2 * k], 1)))
        groups = [Group("factors", "embedding_dim", k, sl,
                        acts=[(f"embedding.emb.{n}", f) for n in self.embedding.emb])]
        if self.hidden_sizes:
            groups += neuron_groups("mlp", self.mlp, [("head.weight", 1, 0)])
        return groups

    def hidden_owner(self, group: str) -> torch.Tensor | None:
        """Positions of ``hidden`` each unit of ``group`` owns (None: width unchanged)."""
        k = self.factors
        if not self.hidden_sizes:
            if group == "factors":
                f = torch.arange(k).unsqueeze(1)
                return torch.cat([f, f + k, f + 2 * k], 1)
            return None
        if group == f"mlp.{len(self.hidden_sizes) - 1}":
            return torch.arange(self.hidden_sizes[-1]).unsqueeze(1)
        return None

    def pruned_arch(self, group: str, keep: torch.Tensor) -> dict:
        a = self.arch()
        if group == "factors":
            a["factors"] = int(keep.sum())
        elif group.startswith("mlp."):
            a["hidden"] = list(a["hidden"])
            a["hidden"][int(group.split(".")[1])] = int(keep.sum())
        else:
            raise KeyError(group)
        return a
