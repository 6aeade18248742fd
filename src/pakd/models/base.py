"""What every model in pakd is: a `RecModel`.

``forward(user, item)`` returns an `Output`: a rating prediction, a ranking logit and a
hidden representation (the input of the output heads, used for feature distillation).
``score_all(users)`` scores the whole catalogue for top-K. ``structure()`` lists the
model's prunable `Group`s (each names the architecture entry it shrinks and the hidden
positions it owns). ``arch`` is the plain architecture config that, with the schema,
rebuilds the model - saved models are weights plus that config, never pickles. A model
owns its optimizer parameter groups (`param_groups`): embedding tables get row-wise L2 in
the loss instead of weight decay.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..data.schema import FieldSpec, Schema
from ..prune.group import ArchEntry, Group


class Output(NamedTuple):
    rating: torch.Tensor   # [B]
    logit: torch.Tensor    # [B]
    hidden: torch.Tensor   # [B, H]


class RecModel(nn.Module):
    """Base class: a recommender predicting a rating and a ranking logit per (user, item)."""

    kind: str = "base"
    outputs: tuple[str, ...] = ("rating", "ranking")   # what its predictions mean
    # score_all is one tensor expression (no chunk loop), so it traces into a graph (ONNX);
    # otherwise a graph scores every (user, item) pair through forward
    one_pass_score_all: bool = False

    def __init__(self, schema: Schema, rating_mean: float = 0.0):
        super().__init__()
        self.schema = schema
        self.register_buffer("rating_mean", torch.tensor(float(rating_mean)))

    # --- to implement
    def forward(self, user: torch.Tensor, item: torch.Tensor) -> Output:  # pragma: no cover
        raise NotImplementedError

    def arch(self) -> dict:  # pragma: no cover
        raise NotImplementedError

    def rated(self, user: torch.Tensor, item: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(rating, hidden) of pairs: what distillation reads from a teacher for each train
        rating (a member that only ranks skips its ranking logit there)."""
        o = self(user, item)
        return o.rating, o.hidden

    def structure(self) -> list[Group]:
        return []

    def rebuilt(self, arch: dict) -> "RecModel":
        """A fresh model of the same kind and schema with another architecture (its token
        tables zero until a state dict is loaded)."""
        return type(self)(self.schema, rating_mean=float(self.rating_mean), tables=None, **arch)

    # --- shared
    def score_all(self, users: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """Ranking logits [len(users), n_items] (or len(items)), by pairs in chunks."""
        n_items = self.schema.n_items if items is None else len(items)
        items = torch.arange(n_items) if items is None else items
        out = torch.empty(len(users), n_items)
        step = max(1, 65536 // max(1, n_items))
        for s in range(0, len(users), step):
            u = users[s:s + step]
            uu = u.repeat_interleave(n_items)
            ii = items.repeat(len(u))
            out[s:s + len(u)] = self.pair_logits(uu, ii).view(len(u), n_items)
        return out

    def pair_logits(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        return self.forward(user, item).logit

    def predict(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        return self.forward(user, item).rating

    def catalogue_user_modules(self) -> list[str]:
        """Dot-product rankers: the modules whose rows in ``score_all`` are the users' (the
        rest are the items', shared by every user)."""
        raise NotImplementedError(f"{self.kind} has no dot-product ranking path")

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def task_params(self) -> dict[str, list[str]] | None:
        """When the rating and ranking outputs read disjoint parameters: their names per task
        (so each head can keep its own best epoch). None when the tasks share parameters."""
        return None

    def lookup_rows(self, user: torch.Tensor, item: torch.Tensor) -> list:
        """(embedding module, indices) of the rows a batch touches: these get row-wise L2
        (as in Surprise's SVD), so rare users and items are not shrunk by every step."""
        return []

    def param_groups(self, weight_decay: float, extra: list | tuple = ()) -> list[dict]:
        """AdamW groups: dense layers (and ``extra`` parameters, e.g. a distillation
        projection) with ``weight_decay``; embedding tables without (they get row-wise L2)."""
        zero = torch.zeros(1, dtype=torch.long)
        emb = {id(m.weight) for m, _ in self.lookup_rows(zero, zero)}
        dense = [p for p in self.parameters() if id(p) not in emb] + list(extra)
        sparse = [p for p in self.parameters() if id(p) in emb]
        groups = [{"params": dense, "weight_decay": weight_decay}]
        if sparse:
            groups.append({"params": sparse, "weight_decay": 0.0})
        return groups


class RankingOnly(RecModel):
    """A member that only ranks (fitted in closed form: EASE, ALS): its rating output is
    the train mean, its hidden representation empty, and it is never trained step by step.
    Subclasses give ``pair_logits`` and ``score_all``."""
    outputs = ("ranking",)

    def forward(self, user, item) -> Output:
        logit = self.pair_logits(user, item)
        return Output(self.rating_mean.expand(len(user)), logit, logit.new_zeros(len(user), 0))

    def rated(self, user, item):
        return self.rating_mean.expand(len(user)), self.rating_mean.new_zeros(len(user), 0)

    def catalogue_user_modules(self) -> list[str]:
        raise NotImplementedError(f"{self.kind} is fitted in closed form, not step by step")


class FieldModel(RecModel):
    """A model that reads field embeddings (``self.embedding``) and first-order terms
    (``self.linear``, width 2: rating, ranking) and maps them through ``interact``: an
    explicit-interaction part (``cross``: CIN, self-attention) beside an optional DNN
    (``self.dnn`` when ``self.dnn_sizes``), concatenated into the hidden representation and
    read by a two-output ``self.head``."""

    CROSS_PARAMS: tuple[str, ...] = ()     # parameter prefixes of the interaction part

    def cross(self, e: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def branches(self, e: torch.Tensor) -> dict[str, torch.Tensor]:
        """The features the head reads: the interaction part and the DNN."""
        out = {"cross": self.cross(e)}
        if self.dnn_sizes:
            out["dnn"] = self.dnn(e.flatten(1))
        return out

    def head_output(self, feats: dict[str, torch.Tensor], lin: torch.Tensor) -> Output:
        hidden = torch.cat(list(feats.values()), 1)
        out = self.head(hidden) + lin
        return Output(self.rating_mean + out[:, 0], out[:, 1], hidden)

    def interact(self, e: torch.Tensor, lin: torch.Tensor) -> Output:
        return self.head_output(self.branches(e), lin)

    def branches_touched(self, params: set[str]) -> set[str] | None:
        """Which branches a change of ``params`` alters (None: the embeddings, so all) - a
        damaged copy can then reuse the intact model's other branch."""
        out: set[str] = set()
        for n in params:
            if n.startswith(self.CROSS_PARAMS):
                out.add("cross")
            elif n.startswith("dnn."):
                out.add("dnn")
            elif not n.startswith("head."):
                return None
        return out

    def forward(self, user, item) -> Output:
        return self.interact(self.embedding(user, item), self.linear(user, item).sum(1))

    # pairs per interaction pass when scoring: intermediates of a thousand pairs stay in
    # cache; the fastest or near it for both feature members (docs/decisions.md#pair-batch)
    PAIR_BATCH = 1024

    def score_all(self, users, items=None):
        """Ranking logits [len(users), n_items] by `ranking_logit`: the DNN's first layer
        applied once per user and once per item (it is linear in the user's and the item's
        fields), the rest per pair."""
        items = torch.arange(self.schema.n_items) if items is None else items
        n = len(items)
        out = torch.empty(len(users), n)
        step = max(1, 32768 // max(1, n))
        item_first = self._dnn_first_side(items, "item") if self.dnn_sizes else None
        for s in range(0, len(users), step):
            u = users[s:s + step]
            e = self.embedding.pairs(u, items)
            lin = self.linear.pairs(u, items).sum(1)
            first = None
            if item_first is not None:
                first = (self._dnn_first_side(u, "user")[:, None] + item_first[None]).flatten(0, 1)
            flat = out[s:s + len(u)].view(-1)
            for p in range(0, len(e), self.PAIR_BATCH):
                q = slice(p, p + self.PAIR_BATCH)
                flat[q] = self.ranking_logit(e[q], lin[q], None if first is None else first[q])
        return out

    def _dnn_first_side(self, idx: torch.Tensor, side: str) -> torch.Tensor:
        """The DNN's first layer on one side's fields: [len(idx), width] (the bias on the
        user side). Its input is every field's vector flattened, user fields first."""
        layer = self.dnn[0]
        n_user = len(self.embedding.user_fields) * self.embedding.dim
        x = self.embedding.side_of(idx, side).flatten(1)
        if side == "user":
            return F.linear(x, layer.weight[:, :n_user], layer.bias)
        return F.linear(x, layer.weight[:, n_user:])

    def ranking_logit(self, e: torch.Tensor, lin: torch.Tensor,
                      dnn_first: torch.Tensor | None = None) -> torch.Tensor:
        """The ranking logit alone (what scoring needs): the head's ranking row folded into
        each branch, so a model may skip what only the rating would read. ``dnn_first``:
        the DNN's first layer already applied (`score_all`)."""
        w = self.head.weight[1]
        n_dnn = self.dnn_sizes[-1] if self.dnn_sizes else 0
        n_cross = len(w) - n_dnn
        out = lin[:, 1] + self.head.bias[1] + self.cross_logit(e, w[:n_cross])
        if self.dnn_sizes:
            h = self.dnn[1:](dnn_first) if dnn_first is not None else self.dnn(e.flatten(1))
            out = out + h @ w[n_cross:]
        return out

    def cross_logit(self, e: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """The interaction part's share of the ranking logit: ``w`` the head's weights on it."""
        return self.cross(e) @ w

    def lookup_rows(self, user, item):
        return self.embedding.lookup_rows(user, item) + self.linear.lookup_rows(user, item)


def fields_by_side(schema: Schema) -> tuple[list[FieldSpec], list[FieldSpec]]:
    return schema.by_side("user"), schema.by_side("item")


class TokenTables(nn.Module):
    """Per-field token tables [n_users or n_items, max_len] (int32, 0 = padding), stored once
    per model as buffers so a saved model finds every field value from user/item indices."""

    def __init__(self, schema: Schema, tables: dict[str, torch.Tensor] | None = None,
                 fields: list[str] | None = None):
        super().__init__()
        for f in schema.fields:
            if fields is not None and f.name not in fields:
                continue
            n_rows = schema.n_users if f.side == "user" else schema.n_items
            tab = tables[f.name] if tables is not None else torch.zeros(n_rows, f.max_len, dtype=torch.int32)
            self.register_buffer(f"tab_{f.name}", tab.to(torch.int32).contiguous())

    def get(self, name: str) -> torch.Tensor:
        return getattr(self, f"tab_{name}")


class FieldEmbedding(nn.Module):
    """One embedding table per field, the same width for all; multi-valued fields are the
    mean of their tokens' vectors. Token tables come from the owning model's `TokenTables`
    (referenced, not owned, so they are stored once however many embeddings read them)."""

    def __init__(self, schema: Schema, dim: int, tokens: TokenTables, init_std: float = 0.01,
                 fields: list[str] | None = None, dedupe: bool = False,
                 rows: dict[str, tuple[str, int]] | None = None):
        """``rows``: field -> (token table, rows) for a field whose table has fewer rows than
        its vocabulary (the student's item rows: the rest read token 0, a zero vector)."""
        super().__init__()
        self.dim, self.dedupe = dim, dedupe
        self.table_of = {f: t for f, (t, _) in (rows or {}).items()}
        object.__setattr__(self, "_tokens", tokens)   # not a submodule: no duplicate state
        names = set(fields) if fields is not None else None
        ufields, ifields = fields_by_side(schema)
        self.user_fields = [f for f in ufields if names is None or f.name in names]
        self.item_fields = [f for f in ifields if names is None or f.name in names]
        self.emb = nn.ModuleDict()
        for f in self.user_fields + self.item_fields:
            e = nn.Embedding(rows[f.name][1] if rows and f.name in rows else f.vocab_size, dim,
                             padding_idx=0)
            nn.init.normal_(e.weight, std=init_std)
            with torch.no_grad():
                e.weight[0].zero_()
            self.emb[f.name] = e

    @property
    def n_fields(self) -> int:
        return len(self.user_fields) + len(self.item_fields)

    def _side(self, fields: list[FieldSpec], idx: torch.Tensor) -> torch.Tensor:
        outs = []
        for f in fields:
            tok = self._tokens.get(self.table_of.get(f.name, f.name)).index_select(0, idx)  # [B, L]
            e = self.emb[f.name]
            if f.kind == "single":
                outs.append(e(tok[:, 0]))
            else:
                v = e(tok)                                        # [B, L, D]; pad rows are 0
                cnt = (tok > 0).sum(1, keepdim=True).clamp(min=1).to(v.dtype)
                outs.append(v.sum(1) / cnt)
        if not outs:
            return torch.zeros(idx.shape[0], 0, self.dim)  # shape[0]: symbolic when traced
        return torch.stack(outs, 1)

    def sides(self, user: torch.Tensor, item: torch.Tensor):
        """(user-side [B, Fu, D], item-side [B, Fi, D]) field vectors. With ``dedupe`` each
        distinct user and item is looked up once and repeated: the same values, far fewer
        lookups to differentiate when a batch repeats users (candidate lists, negatives).
        Only in training (inference batches gain nothing from the extra sort), and not while
        hooks watch the tables: per-example hooks need one row per pair."""
        if self.dedupe and self.training and not any(e._forward_hooks for e in self.emb.values()):
            uu, ui = torch.unique(user, return_inverse=True)
            iu, ii = torch.unique(item, return_inverse=True)
            return self._side(self.user_fields, uu)[ui], self._side(self.item_fields, iu)[ii]
        return self._side(self.user_fields, user), self._side(self.item_fields, item)

    def side_of(self, idx: torch.Tensor, side: str) -> torch.Tensor:
        """One side's field vectors [B, F, D] (``side`` "user" or "item"), without looking
        up the other."""
        return self._side(self.user_fields if side == "user" else self.item_fields, idx)

    def pairs(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """[len(users) * len(items), F, D] for every (user, item) combination, user-major,
        looking each side up once instead of once per pair."""
        u, i = self.sides(users, items)
        b, n = len(users), len(items)
        return torch.cat([u[:, None].expand(b, n, *u.shape[1:]),
                          i[None].expand(b, n, *i.shape[1:])], 2).reshape(b * n, -1, self.dim)

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """[B, F, D]: user-side fields first, then item-side fields."""
        u, i = self.sides(user, item)
        return torch.cat([u, i], 1)

    def lookup_rows(self, user: torch.Tensor, item: torch.Tensor):
        """(embedding module, token indices) of the rows a batch touches (for row-wise L2)."""
        out = []
        for fields, idx in ((self.user_fields, user), (self.item_fields, item)):
            for f in fields:
                out.append((self.emb[f.name],
                            self._tokens.get(self.table_of.get(f.name, f.name))[idx]))
        return out


def mlp(sizes: list[int], dropout: float = 0.0) -> nn.Sequential:
    """Linear+ReLU(+Dropout) stack: sizes [in, h1, h2, ...]; the last layer is activated too."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def linear_layers(seq: nn.Sequential) -> list[tuple[str, nn.Linear]]:
    return [(str(i), m) for i, m in enumerate(seq) if isinstance(m, nn.Linear)]


def neuron_groups(prefix: str, seq: nn.Sequential,
                  consumer: list[tuple[str, int, int]] | None = None, *, arch_key: str,
                  hidden_offset: int | None = None) -> list[Group]:
    """Groups for the hidden neurons of an `mlp` at ``prefix``.

    Neuron j of layer l owns row j of that layer's weight and bias, and the input column(s)
    of whatever consumes it: the next layer, or ``consumer`` (param, dim, base index [k]) for
    the last layer, whose input positions start at base offset. Layer l's size is
    ``arch[arch_key][l]``; the last layer's neurons sit at ``hidden_offset`` + j of the
    model's hidden representation (None: not part of it).
    """
    lins = linear_layers(seq)
    groups = []
    for li, (name, lin) in enumerate(lins):
        h = lin.out_features
        rows = torch.arange(h).unsqueeze(1)
        slices = [(f"{prefix}.{name}.weight", 0, rows), (f"{prefix}.{name}.bias", 0, rows)]
        if li + 1 < len(lins):
            slices.append((f"{prefix}.{lins[li + 1][0]}.weight", 1, rows))
        elif consumer is not None:
            for pname, dim, offset in consumer:
                slices.append((pname, dim, rows + offset))
        last = li + 1 == len(lins)
        groups.append(Group(f"{prefix}.{li}", "neuron", h, slices,
                            acts=[(f"{prefix}.{name}", rows)], arch=[ArchEntry(arch_key, li)],
                            hidden=rows + hidden_offset if last and hidden_offset is not None
                            else None))
    return groups
