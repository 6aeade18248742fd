"""The ID-table student, ``lightweight_model`` (the default student is the item-tower
`pakd.models.tower`): two field-aware factorisations, one per task, plus a small MLP on the
rating side.

rating:   p_u = P[u] + mean of the user's side-field vectors, q_i likewise for the item
          rating = mu + b_u + b_i + p_u . q_i + w . MLP([p_u, q_i, p_u * q_i])
ranking:  p'_u, q'_i from a second set of field embeddings
          logit  = c_i + p'_u . q'_i
hidden  = [MLP output, p'_u * q'_i]

Why this shape: ranking a whole catalogue must be one matrix product to be fast, so the
ranking side is a pure dot product; "what a user watches" and "how they rate it" pull shared
factors apart (measured on the SVD teacher), so each task has its own factors; the side
fields (genres, year, tags, demographics) let rare items borrow strength; the MLP lets the
rating side copy non-linear teacher behaviour.

Prunable structure: rating factors (column k of every rating-side table and the MLP's input
columns for k), ranking factors (column k of every ranking-side table), MLP neurons.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.schema import Schema
from ..errors import PakdError
from .base import (ArchEntry, FieldEmbedding, Group, Output, RecModel, TokenTables, linear_layers,
                   mlp, neuron_groups)


def _pool(side: torch.Tensor) -> torch.Tensor:
    """ID vector plus the mean of the side-field vectors: [B, F, K] -> [B, K]."""
    if side.shape[1] == 1:
        return side[:, 0]
    return side[:, 0] + side[:, 1:].mean(1)


def _inference(model: nn.Module) -> bool:
    """Eval mode, no autograd, not traced or compiled: derived tables may be reused between
    calls. (Eval mode alone is not enough: Fisher and pruning differentiate eval models.)"""
    return not (model.training or torch.is_grad_enabled() or torch.jit.is_tracing()
                or torch.compiler.is_compiling())


ITEM_ROWS = "item_rows"     # token table of the items that own factor rows


def item_row_table(counts: torch.Tensor, rows: int) -> torch.Tensor:
    """[n_items, 1] int32: the ``rows`` items with the most train ratings (ties: lower index)
    own factor rows 1..rows in that order; every other item reads row 0 (zero), so its
    factors are the mean of its side-field vectors alone."""
    order = torch.argsort(-counts.to(torch.float64), stable=True)[:rows]
    tab = torch.zeros(len(counts), 1, dtype=torch.int32)
    tab[order, 0] = torch.arange(1, len(order) + 1, dtype=torch.int32)
    return tab


class LightweightStudent(RecModel):
    kind = "lightweight_model"
    one_pass_score_all = True

    def __init__(self, schema: Schema, *, factors: int, rank_factors: int, hidden: list[int],
                 side_fields: bool, item_rows: int = 0, rating_mean: float = 0.0, tables=None):
        super().__init__(schema, rating_mean)
        self.factors, self.rank_factors = factors, rank_factors
        self.hidden_sizes = list(hidden)
        self.side_fields = side_fields
        self.item_rows = item_rows if 0 < item_rows < schema.n_items else 0
        names = None if side_fields else ["user_id", "item_id"]
        self.tokens = TokenTables(schema, tables, fields=names)
        rows = None
        if self.item_rows:
            # which item owns which factor row (0: none): `item_row_table`
            tab = tables.get(ITEM_ROWS) if tables is not None else None
            if tables is not None and tab is None:
                raise PakdError(f"item_rows {item_rows} needs the table of which items own "
                                f"rows: pass tables with {ITEM_ROWS!r} (`item_row_table`)")
            self.tokens.register_buffer(
                f"tab_{ITEM_ROWS}", (tab if tab is not None else torch.zeros(
                    schema.n_items, 1)).to(torch.int32).contiguous())
            rows = {"item_id": (ITEM_ROWS, self.item_rows + 1)}
        # lookups deduplicated per batch: training steps repeat users and items many times
        self.embedding = FieldEmbedding(schema, factors, self.tokens, init_std=0.05, fields=names,
                                        dedupe=True, rows=rows)
        self.rank_embedding = FieldEmbedding(schema, rank_factors, self.tokens, init_std=0.05,
                                             fields=names, dedupe=True, rows=rows)
        self.bias = FieldEmbedding(schema, 1, self.tokens, init_std=0.0,
                                   fields=["user_id", "item_id"], dedupe=True)
        self.rank_bias = FieldEmbedding(schema, 1, self.tokens, init_std=0.0, fields=["item_id"],
                                        dedupe=True)
        self.mlp = mlp([3 * factors] + self.hidden_sizes)
        self.head = nn.Linear(self.hidden_sizes[-1], 1) if self.hidden_sizes else None
        if self.head is not None:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def arch(self) -> dict:
        return {"factors": self.factors, "rank_factors": self.rank_factors,
                "hidden": self.hidden_sizes, "side_fields": self.side_fields,
                "item_rows": self.item_rows}

    def _rating_side(self, user, item):
        u, i = self.embedding.sides(user, item)
        return self._rating_from(_pool(u), _pool(i))

    def _rating_from(self, p, q):
        feat = torch.cat([p, q, p * q], 1)
        if self.head is None:
            return (p * q).sum(1), p * q
        h = self.mlp(feat)
        return (p * q).sum(1) + self.head(h)[:, 0], h

    def _rank_vectors(self, user, item):
        u, i = self.rank_embedding.sides(user, item)
        return _pool(u), _pool(i)

    def forward(self, user, item) -> Output:
        if _inference(self):
            # the item side depends on the item alone: read it from the catalogue's pooled
            # vectors instead of pooling every pair's side fields again (tags and genres
            # are most of a batch's work)
            q_all, qk_all, c_all = self._catalogue()
            p = _pool(self.embedding.side_of(user, "user"))
            pk = _pool(self.rank_embedding.side_of(user, "user"))
            inter, h = self._rating_from(p, q_all.index_select(0, item))
            qk, c = qk_all.index_select(0, item), c_all.index_select(0, item)
        else:
            inter, h = self._rating_side(user, item)
            pk, qk = self._rank_vectors(user, item)
            c = self.rank_bias(user, item)[:, 0, 0]
        b = self.bias(user, item).sum((1, 2))
        return Output(self.rating_mean + b + inter, c + (pk * qk).sum(1),
                      torch.cat([h, pk * qk], 1))

    def pair_logits(self, user, item):
        """Ranking logits alone: the cheap path for sampled negatives and candidate lists."""
        pk, qk = self._rank_vectors(user, item)
        return self.rank_bias(user, item)[:, 0, 0] + (pk * qk).sum(1)

    def score_all(self, users, items=None):
        """One matrix product: ranking vectors of the users times those of the items."""
        pk = _pool(self.rank_embedding.side_of(users, "user"))
        qk, c = self._item_rank_side(items)
        return pk @ qk.T + c

    def _item_rank_side(self, items=None):
        """(ranking vectors, ranking biases) of ``items`` (default the catalogue, memoised in
        inference: `_catalogue`)."""
        if items is None:
            return self._catalogue()[1:] if _inference(self) else \
                self._item_rank_side(torch.arange(self.schema.n_items))
        return _pool(self.rank_embedding.side_of(items, "item")), \
            self.rank_bias.side_of(items, "item")[:, 0, 0]

    def _catalogue(self):
        """(rating vectors, ranking vectors, ranking biases) of every item, kept between
        inference calls while no parameter or token table has changed (same storage, same
        in-place version): pooling the side fields of every item costs far more than
        scoring one user, or a batch of pairs, against them."""
        key = tuple((t.data_ptr(), t._version) for t in [*self.parameters(), *self.buffers()])
        memo = self.__dict__.get("_item_memo")
        if memo is not None and memo[0] == key:
            return memo[1]
        items = torch.arange(self.schema.n_items)
        side = (_pool(self.embedding.side_of(items, "item")), *self._item_rank_side(items))
        self.__dict__["_item_memo"] = (key, side)
        return side

    def catalogue_user_modules(self) -> list[str]:
        return [f"rank_embedding.emb.{f.name}" for f in self.rank_embedding.user_fields]

    def task_params(self):
        names = [n for n, _ in self.named_parameters()]
        ranking = [n for n in names if n.startswith(("rank_embedding.", "rank_bias."))]
        return {"rating": [n for n in names if n not in ranking], "ranking": ranking}

    def lookup_rows(self, user, item):
        return (self.embedding.lookup_rows(user, item) + self.rank_embedding.lookup_rows(user, item)
                + self.bias.lookup_rows(user, item) + self.rank_bias.lookup_rows(user, item))

    def structure(self) -> list[Group]:
        """hidden = [MLP output (or p * q without an MLP), p' * q']: the groups that own its
        positions say so, for feature distillation."""
        k = self.factors
        f = torch.arange(k).unsqueeze(1)
        sl = [(f"embedding.emb.{n}.weight", 1, f) for n in self.embedding.emb]
        if self.hidden_sizes:
            first = linear_layers(self.mlp)[0][0]
            sl.append((f"mlp.{first}.weight", 1, torch.cat([f, f + k, f + 2 * k], 1)))
        groups = [Group("factors", "embedding_dim", k, sl,
                        acts=[(f"embedding.emb.{n}", f) for n in self.embedding.emb],
                        arch=[ArchEntry("factors")], hidden=None if self.hidden_sizes else f)]
        width = self.hidden_sizes[-1] if self.hidden_sizes else self.factors
        r = torch.arange(self.rank_factors).unsqueeze(1)
        groups.append(Group("rank_factors", "embedding_dim", self.rank_factors,
                            [(f"rank_embedding.emb.{n}.weight", 1, r) for n in self.rank_embedding.emb],
                            acts=[(f"rank_embedding.emb.{n}", r) for n in self.rank_embedding.emb],
                            arch=[ArchEntry("rank_factors")], hidden=width + r))
        if self.hidden_sizes:
            groups += neuron_groups("mlp", self.mlp, [("head.weight", 1, 0)], arch_key="hidden",
                                    hidden_offset=0)
        return groups
