"""The default student, ``tower_student``: items in one factor space, users built from the
items they rated, and every table cut into units that pruning can weigh one by one.

item i:   q_i = its ID row (if it owns one) + the mean of its side-field vectors (genres,
          year, tags): an item without a row is its side fields alone
          b_i, c_i = the row's biases + the mean of the side fields' (rating, ranking)
user u:   from the train items H(u) and their ratings, no parameters of its own:
          h_u = sum_j q_j / |H(u)|^alpha                          (what the user watches)
          e_u = sum_j (r_uj - mu - b_j) q_j / |H(u)|^alpha        (how they rate it)
          b_u = s * sum_j (r_uj - mu - b_j) / (|H(u)| + 10)
          (+ user side fields; + an ID row of its own with ``user_side`` "table")
ranking:  logit(u, i) = c_i + w log(1 + n_i) + (W_k h_u) . (V_k q_i)
rating:   r(u, i) = mu + b_u + b_i + (W_r e_u + U_r h_u) . (V_r q_i)

Why this shape. Ranking a catalogue stays one product (users' vectors times items'), so the
student is fast. A user is the items they rated (an asymmetric factorisation, FISM / NSVD
style: Kabbur et al. 2013, Koren 2008), so a new user is served from their ratings without
training and no size grows with the number of users. The item ID rows live in popularity
buckets (by train counts); each row is a prunable unit and so is each column of each
bucket's table (mixed-dimension embeddings, Ginart et al. 2021): which items keep a row
and how wide is decided by the pruning criterion during distillation. A table's columns
carry the IDs of the space dimensions they fill (``cols``), so a narrow table fills only
its own dimensions and no projection costs parameters.

While training, the pairs a step predicts are left out of their users' histories
(`step`): a user vector built from the very rating it predicts would learn to copy it.

Per-example unit masks (`observe`): while a step is observed, every unit's contribution is
multiplied by a mask of ones per example (the step's users), so one backward pass gives the
gradient of each user's loss with respect to each unit's mask - the mask Fisher of every
unit, summed over the examples that actually use it (`mask_gradients`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..csr import csr_take
from ..data.schema import Schema
from ..prune.group import Group
from .base import Output, RecModel, TokenTables, mlp, neuron_groups

USER_BIAS_SHRINK = 10.0   # ratings of pseudo-count in a user's bias (baseline estimators)


class Table(nn.Module):
    """Rows of vectors in the factor space: ``weight`` [rows, width] with the space-dimension
    ID of each column (``cols``), ``bias`` [rows, 2] (rating, ranking), and for ID tables
    the item (or user) index each row belongs to (``owner``)."""

    def __init__(self, rows: int, width: int, owned: bool, init_std: float):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(rows, width) * init_std)
        self.bias = nn.Parameter(torch.zeros(rows, 2))
        self.register_buffer("cols", torch.arange(width, dtype=torch.long))
        if owned:
            self.register_buffer("owner", torch.zeros(rows, dtype=torch.long))


@dataclass
class _Step:
    """What one training step shares between its calls: its examples (users), the pairs it
    predicts (left out of the histories), per-example masks, and memoised parts."""
    users: torch.Tensor
    holdout: torch.Tensor | None               # sorted keys user * n_items + item
    masks: dict[str, torch.Tensor] | None = None
    memo: dict = field(default_factory=dict)


class TowerStudent(RecModel):
    kind = "tower_student"
    one_pass_score_all = True

    def __init__(self, schema: Schema, *, dim: int, rank_dims: int, rate_dims: int,
                 bucket_rows: list[int], bucket_dims: list[int], field_dims: list[int],
                 history: int, hidden: list[int] | None = None, user_side: str = "tower",
                 user_rows: int = 0, user_dims: int = 0, alpha: float = 0.5,
                 init_std: float = 0.05, rating_mean: float = 0.0, tables=None):
        super().__init__(schema, rating_mean)
        bucket_dims = list(bucket_dims) or [dim] * len(bucket_rows)   # empty: full width
        if len(bucket_rows) != len(bucket_dims):
            raise ValueError("bucket_rows and bucket_dims need one entry per bucket")
        self.dim, self.rank_dims, self.rate_dims = dim, rank_dims, rate_dims
        self.alpha, self.user_side, self.init_std = float(alpha), user_side, init_std
        self.hidden_sizes = list(hidden or [])
        self.history = int(history)
        self.item_fields = [f for f in schema.by_side("item") if f.name != "item_id"]
        self.user_fields = [f for f in schema.by_side("user") if f.name != "user_id"]
        side = self.item_fields + self.user_fields
        field_dims = list(field_dims) or [dim] * len(side)
        if len(field_dims) != len(side):
            raise ValueError(f"field_dims needs one width per side field ({len(side)})")
        self.tokens = TokenTables(schema, tables, fields=[f.name for f in side])
        self.register_buffer("space", torch.arange(dim, dtype=torch.long))
        self.buckets = nn.ModuleList(Table(n, d, True, init_std)
                                     for n, d in zip(bucket_rows, bucket_dims))
        self.fields = nn.ModuleDict({f.name: Table(f.vocab_size, d, False, init_std)
                                     for f, d in zip(side, field_dims)})
        self.users = (Table(user_rows, user_dims, True, init_std) if user_side == "table"
                      else None)
        std = dim ** -0.5
        self.rank_user = nn.Parameter(torch.randn(rank_dims, dim) * std)
        self.rank_item = nn.Parameter(torch.randn(rank_dims, dim) * std)
        self.rate_user = nn.Parameter(torch.randn(rate_dims, dim) * std)
        self.rate_user_imp = nn.Parameter(torch.zeros(rate_dims, dim))
        self.rate_item = nn.Parameter(torch.randn(rate_dims, dim) * std)
        self.pop_weight = nn.Parameter(torch.ones(()))
        self.user_bias_scale = nn.Parameter(torch.ones(()))
        self.mlp = mlp([3 * rate_dims] + self.hidden_sizes) if self.hidden_sizes else None
        self.head = nn.Linear(self.hidden_sizes[-1], 1) if self.hidden_sizes else None
        if self.head is not None:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        get = (lambda k, d: tables[k] if tables is not None and k in tables else d)
        self.register_buffer("hist_indptr", get("hist_indptr", torch.zeros(
            schema.n_users + 1, dtype=torch.long)).long().contiguous())
        self.register_buffer("hist_items", get("hist_items", torch.zeros(
            self.history, dtype=torch.long)).long().contiguous())
        self.register_buffer("hist_ratings", get("hist_ratings", torch.zeros(
            self.history)).float().contiguous())
        self.register_buffer("log_pop", get("log_pop", torch.zeros(schema.n_items)).float())
        if tables is not None and "bucket_owner" in tables:
            for t, owner in zip(self.buckets, tables["bucket_owner"]):
                t.owner.copy_(owner)
        if self.users is not None and tables is not None and "user_owner" in tables:
            self.users.owner.copy_(tables["user_owner"])
        self._step: _Step | None = None
        self.observing = False

    # ------------------------------------------------------------------ architecture
    def arch(self) -> dict:
        return {"dim": self.dim, "rank_dims": self.rank_dims, "rate_dims": self.rate_dims,
                "bucket_rows": [t.weight.shape[0] for t in self.buckets],
                "bucket_dims": [t.weight.shape[1] for t in self.buckets],
                "field_dims": [t.weight.shape[1] for t in self.fields.values()],
                "history": self.history, "hidden": self.hidden_sizes,
                "user_side": self.user_side,
                "user_rows": self.users.weight.shape[0] if self.users is not None else 0,
                "user_dims": self.users.weight.shape[1] if self.users is not None else 0,
                "alpha": self.alpha, "init_std": self.init_std}

    def arch_from_state(self, sd: dict) -> dict:
        """The architecture a state dict's shapes describe (after pruning sliced it)."""
        out = self.arch()
        n = len(self.buckets)
        out.update(dim=sd["space"].shape[0], rank_dims=sd["rank_user"].shape[0],
                   rate_dims=sd["rate_user"].shape[0],
                   bucket_rows=[sd[f"buckets.{b}.weight"].shape[0] for b in range(n)],
                   bucket_dims=[sd[f"buckets.{b}.weight"].shape[1] for b in range(n)],
                   field_dims=[sd[f"fields.{f}.weight"].shape[1] for f in self.fields])
        if self.users is not None:
            out.update(user_rows=sd["users.weight"].shape[0],
                       user_dims=sd["users.weight"].shape[1])
        if self.hidden_sizes:
            lins = [k for k in sd if k.startswith("mlp.") and k.endswith(".weight")]
            out["hidden"] = [sd[k].shape[0] for k in sorted(lins, key=lambda s: int(s.split(".")[1]))]
        return out

    # ------------------------------------------------------------------ steps and masks
    def step(self, users: torch.Tensor, holdout: tuple[torch.Tensor, torch.Tensor] | None):
        """Start a training step over the examples ``users`` (sorted, distinct) predicting
        the pairs ``holdout`` (left out of their users' histories). Calls until the next
        step (or a change of mode) share its item side; with `observing`, its masks."""
        key = None
        if holdout is not None:
            key = torch.sort(holdout[0] * self.schema.n_items + holdout[1]).values
        self._step = _Step(users, key)
        if self.observing:
            self._step.masks = self._new_masks(len(users))

    def train(self, mode: bool = True):
        self._step = None
        if mode:                      # training: the inference memo goes (eval() keeps it)
            self.__dict__.pop("_memo", None)
        return super().train(mode)

    def load_state_dict(self, *args, **kwargs):
        self.__dict__.pop("_memo", None)
        return super().load_state_dict(*args, **kwargs)

    def __getstate__(self):
        """Copies (deepcopy, pickling by torch's spawn) leave out the step's tensors and the
        memos: they hold autograd graphs and are rebuilt on demand."""
        state = super().__getstate__()
        state = {k: v for k, v in state.items() if k not in ("_memo", "_maps")}
        state["_step"] = None
        return state

    def _inference_memo(self) -> dict | None:
        """What inference computes from the weights alone - the catalogue, its ranking
        vectors, users' aggregates - kept while every parameter and buffer is the same
        tensor at the same version (an optimiser step, ``load_state_dict`` or any in-place
        edit bumps the version; the memo holds the tensors, so a replaced one is never
        mistaken for another at a reused address). None in training or under autograd."""
        if self.training or torch.is_grad_enabled():
            return None
        tensors, stack = [], [self]           # every parameter and buffer, walked cheaply
        while stack:
            m = stack.pop()
            tensors += [t for t in (*m._parameters.values(), *m._buffers.values())
                        if t is not None]
            stack += [c for c in m._modules.values() if c is not None]
        versions = [t._version for t in tensors]
        inference = torch.is_inference_mode_enabled()
        memo = self.__dict__.get("_memo")
        if (memo is None or memo["inference"] != inference or memo["versions"] != versions
                or len(memo["tensors"]) != len(tensors)
                or any(a is not b for a, b in zip(memo["tensors"], tensors))):
            memo = {"tensors": tensors, "versions": versions, "inference": inference}
            self.__dict__["_memo"] = memo
        return memo

    def _new_masks(self, n: int) -> dict[str, torch.Tensor]:
        def ones(*shape):
            return torch.ones(*shape, dtype=self._dtype, requires_grad=True)
        m = {"items": ones(n, self.schema.n_items), "dims_user": ones(n, self.dim),
             "dims_item": ones(n, self.dim), "rank": ones(n, self.rank_dims),
             "rate": ones(n, self.rate_dims)}
        for b, t in enumerate(self.buckets):
            m[f"bucket.{b}"] = ones(n, t.weight.shape[1])
        for f, t in self.fields.items():
            m[f"field.{f}"] = ones(n, t.weight.shape[1])
        if self.users is not None:
            m["user_rows"] = ones(n, 1)
            m["user_dims"] = ones(n, self.users.weight.shape[1])
        return m

    def mask_gradients(self) -> dict[str, torch.Tensor] | None:
        """Per-example gradients of the loss w.r.t. every unit's mask [examples, units],
        group by group (`structure`), after ``backward`` of an observed step."""
        s = self._step
        if s is None or s.masks is None:
            return None

        def g(name):
            t = s.masks[name].grad
            return torch.zeros_like(s.masks[name]) if t is None else t
        out = {"dims": g("dims_user") + g("dims_item"), "rank_dims": g("rank"),
               "rate_dims": g("rate")}
        items = g("items")
        for b, t in enumerate(self.buckets):
            out[f"rows.{b}"] = items[:, t.owner]
            out[f"bucket_dims.{b}"] = g(f"bucket.{b}")
        for f in self.fields:
            out[f"field_dims.{f}"] = g(f"field.{f}")
        if self.users is not None:
            rows = self._zeros(len(s.users), self.users.weight.shape[0])
            pos, mine = self._user_rows(s.users)
            rows[mine, pos[mine]] = g("user_rows")[mine, 0]
            out["user_rows"] = rows
            out["user_dims"] = g("user_dims")
        out = {k: v.clone() for k, v in out.items()}
        self._catalogue_mask_gradients(out)
        return out

    def _mask(self, name: str, ex: torch.Tensor) -> torch.Tensor:
        """Rows ``ex`` of an observed step's mask ``name``. Gathered with `index_select`,
        whose gradient adds in a fixed order: an indexed gather's (``mask[ex]``) adds with
        atomics across threads once it is large, so mask gradients - and the units pruning
        keeps - would change from run to run in their last bits."""
        return self._step.masks[name].index_select(0, ex)

    def _mask_at(self, name: str, ex: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Entries (ex[p], cols[p]) of the mask ``name``, gathered as `_mask` gathers."""
        m = self._step.masks[name]
        return m.reshape(-1).index_select(0, ex * m.shape[1] + cols)

    def _example(self, users: torch.Tensor) -> torch.Tensor | None:
        """Position of each of ``users`` among the observed step's examples."""
        s = self._step
        if s is None or s.masks is None:
            return None
        return torch.searchsorted(s.users, users)

    # ------------------------------------------------------------------ item side
    @property
    def _dtype(self) -> torch.dtype:
        return self.rank_user.dtype

    def _zeros(self, *shape) -> torch.Tensor:
        return torch.zeros(*shape, dtype=self._dtype)

    def _pos(self, cols: torch.Tensor) -> torch.Tensor:
        return torch.searchsorted(self.space, cols)

    def _owner_maps(self, tables: nn.ModuleList, n: int):
        """(table of each item, its row there), -1 where none: derived from ``owner``."""
        key = tuple((t.owner.data_ptr(), t.owner._version, len(t.owner)) for t in tables)
        memo = self.__dict__.get("_maps", {})
        if memo.get(id(tables), (None,))[0] == key:
            return memo[id(tables)][1]
        which = torch.full((n,), -1, dtype=torch.long)
        row = torch.full((n,), -1, dtype=torch.long)
        for b, t in enumerate(tables):
            which[t.owner] = b
            row[t.owner] = torch.arange(len(t.owner))
        memo[id(tables)] = (key, (which, row))
        self.__dict__["_maps"] = memo
        return which, row

    def _pooled(self, name: str, idx: torch.Tensor | None = None):
        """(vectors [n, width], biases [n, 2]) of a side field for ``idx`` (default every
        item or user), mean-pooled over its tokens; within a step each field is pooled once
        for the whole catalogue and its rows are read from there."""
        s = self._step
        if s is not None and idx is not None:
            key = ("pooled", name)
            if key not in s.memo:
                s.memo[key] = self._pooled_all(name)
            v, b = s.memo[key]
            return v[idx], b[idx]
        if s is not None:
            key = ("pooled", name)
            if key not in s.memo:
                s.memo[key] = self._pooled_all(name)
            return s.memo[key]
        return self._pooled_all(name, idx)

    def _pooled_all(self, name: str, idx: torch.Tensor | None = None):
        tok = self.tokens.get(name)
        tok = tok if idx is None else tok.index_select(0, idx)
        t = self.fields[name]
        tok = tok.long()
        return (F.embedding_bag(tok, t.weight, mode="mean", padding_idx=0),
                F.embedding_bag(tok, t.bias, mode="mean", padding_idx=0))

    def _catalogue(self):
        """(q [items, dim], rating bias [items], ranking bias [items]) of every item without
        masks; memoised per step in training and per weights in inference."""
        s = self._step
        if s is not None and "catalogue" in s.memo:
            return s.memo["catalogue"]
        memo = self._inference_memo()
        if memo is not None and "catalogue" in memo:
            return memo["catalogue"]
        n = self.schema.n_items
        q = self._zeros(n, self.dim)
        bias = self._zeros(n, 2)
        for t in self.buckets:
            if len(t.owner):
                q = q.index_put((t.owner[:, None], self._pos(t.cols)[None, :]), t.weight,
                                accumulate=True)
                bias = bias.index_add(0, t.owner, t.bias)
        if self.item_fields:
            k = len(self.item_fields)
            for f in self.item_fields:
                v, b = self._pooled(f.name)
                q = q.index_add(1, self._pos(self.fields[f.name].cols), v / k)
                bias = bias + b / k
        out = (q, bias[:, 0], bias[:, 1] + self.pop_weight * self.log_pop)
        if s is not None:
            s.memo["catalogue"] = out
        elif memo is not None:
            memo["catalogue"] = out
        return out

    def _item_parts(self, items: torch.Tensor, ex: torch.Tensor | None):
        """(q [P, dim], rating bias [P], ranking bias [P]) of ``items``; with example
        positions ``ex`` (an observed step), every unit's part times its example's mask."""
        if ex is None:
            q, b, c = self._catalogue()
            return q.index_select(0, items), b.index_select(0, items), c.index_select(0, items)
        q = self._zeros(len(items), self.dim)
        bias = self._zeros(len(items), 2)
        which, row = self._owner_maps(self.buckets, self.schema.n_items)
        m_items = self._mask_at("items", ex, items)
        for bi, t in enumerate(self.buckets):
            sel = torch.nonzero(which[items] == bi).flatten()
            if len(sel) == 0:
                continue
            r = row[items[sel]]
            part = (t.weight.index_select(0, r) * self._mask(f"bucket.{bi}", ex[sel])
                    * m_items[sel, None])
            q = q.index_put((sel[:, None], self._pos(t.cols)[None, :]), part, accumulate=True)
            bias = bias.index_add(0, sel, t.bias.index_select(0, r) * m_items[sel, None])
        if self.item_fields:
            k = len(self.item_fields)
            for f in self.item_fields:
                v, b = self._pooled(f.name, items)
                v = v * self._mask(f"field.{f.name}", ex)
                q = q.index_add(1, self._pos(self.fields[f.name].cols), v / k)
                bias = bias + b / k
        c = bias[:, 1] + self.pop_weight * self.log_pop[items]
        return q, bias[:, 0], c

    # ------------------------------------------------------------------ user side
    def _user_rows(self, users: torch.Tensor):
        """(row of each user in the user table, whether it has one)."""
        which, row = self._owner_maps(nn.ModuleList([self.users]), self.schema.n_users)
        return row[users].clamp(min=0), which[users] >= 0

    def _history(self, users: torch.Tensor):
        """(position in ``users``, item, rating) of their train ratings, without the step's
        held-out pairs."""
        pos, item = csr_take(self.hist_indptr, self.hist_items, users)
        start = self.hist_indptr[users]
        lens = self.hist_indptr[users + 1] - start
        offs = torch.arange(len(item)) - torch.repeat_interleave(lens.cumsum(0) - lens, lens)
        rating = self.hist_ratings[torch.repeat_interleave(start, lens) + offs]
        s = self._step
        if s is not None and s.holdout is not None and len(s.holdout):
            key = users[pos] * self.schema.n_items + item
            at = torch.searchsorted(s.holdout, key).clamp(max=len(s.holdout) - 1)
            keep = s.holdout[at] != key
            pos, item, rating = pos[keep], item[keep], rating[keep]
        return pos, item, rating

    def _users(self, users: torch.Tensor):
        """(h [U, dim], e [U, dim], b_u [U]) of distinct ``users``; memoised per step in
        training and per weights in inference (`_inference_memo`)."""
        s = self._step
        if s is not None:
            if "users" not in s.memo:
                s.memo["users"] = self._users_of(s.users)
            at = torch.searchsorted(s.users, users).clamp(max=max(0, len(s.users) - 1))
            if len(s.users) and bool((s.users[at] == users).all()):
                return tuple(t[at] for t in s.memo["users"])
            return self._users_of(users)
        memo = self._inference_memo()
        if memo is None:
            return self._users_of(users)
        if "users" not in memo:
            n = self.schema.n_users
            memo["users"] = (self._zeros(n, self.dim), self._zeros(n, self.dim),
                             self._zeros(n), torch.zeros(n, dtype=torch.bool))
        h, e, b_u, have = memo["users"]
        # a user's aggregates are sums over their own history only, so they are the same
        # whichever batch computes them: only the users not seen yet are computed
        miss = torch.unique(users[~have[users]])
        if len(miss):
            h[miss], e[miss], b_u[miss] = self._users_of(miss)
            have[miss] = True
        return h[users], e[users], b_u[users]

    def _users_of(self, users: torch.Tensor, hist=None):
        ex = self._example(users)
        pos, item, rating = self._history(users) if hist is None else hist
        q, b_rate, _ = self._item_parts(item, None if ex is None else ex[pos])
        n = self._zeros(len(users)).index_add(0, pos, torch.ones(len(pos), dtype=self._dtype))
        resid = rating - self.rating_mean - b_rate
        norm = n.clamp(min=1) ** -self.alpha
        h = self._zeros(len(users), self.dim).index_add(0, pos, q * norm[pos, None])
        e = self._zeros(len(users), self.dim).index_add(0, pos, q * (resid * norm[pos])[:, None])
        b_u = self.user_bias_scale * self._zeros(len(users)).index_add(0, pos, resid) / (
            n + USER_BIAS_SHRINK)
        if self.user_fields:
            k = len(self.user_fields)
            for f in self.user_fields:
                v, b = self._pooled(f.name, users)
                if ex is not None:
                    v = v * self._mask(f"field.{f.name}", ex)
                h = h.index_add(1, self._pos(self.fields[f.name].cols), v / k)
                b_u = b_u + b[:, 0] / k
        if self.users is not None:
            r, has = self._user_rows(users)
            t = self.users
            w = t.weight.index_select(0, r) * has[:, None]
            bb = t.bias.index_select(0, r)[:, 0] * has
            if ex is not None:
                w = w * self._mask("user_dims", ex) * self._mask("user_rows", ex)
                bb = bb * self._mask("user_rows", ex)[:, 0]
            h = h.index_add(1, self._pos(t.cols), w)
            b_u = b_u + bb
        if ex is not None:
            h = h * self._mask("dims_user", ex)
            e = e * self._mask("dims_user", ex)
        return h, e, b_u

    def _user_vectors(self, users: torch.Tensor, hist=None):
        """(ranking vector [U, rank], rating vector [U, rate], b_u) of distinct ``users``
        (from ``hist``, (position in ``users``, item, rating), instead of their history)."""
        h, e, b_u = self._users(users) if hist is None else self._users_of(users, hist)
        p = h @ self.rank_user.T
        pr = e @ self.rate_user.T + h @ self.rate_user_imp.T
        ex = self._example(users)
        if ex is not None:
            p = p * self._mask("rank", ex)
            pr = pr * self._mask("rate", ex)
        return p, pr, b_u

    # ------------------------------------------------------------------ outputs
    def forward(self, user: torch.Tensor, item: torch.Tensor) -> Output:
        uu, inv = torch.unique(user, return_inverse=True)
        p, pr, b_u = self._user_vectors(uu)
        ex = self._example(user)
        q, b_i, c_i = self._item_parts(item, ex)
        if ex is not None:
            q = q * self._mask("dims_item", ex)
        k, kr = q @ self.rank_item.T, q @ self.rate_item.T
        p, pr = p.index_select(0, inv), pr.index_select(0, inv)   # as `_mask` gathers
        logit = c_i + (p * k).sum(1)
        inter = pr * kr
        rating = self.rating_mean + b_u.index_select(0, inv) + b_i + inter.sum(1)
        hidden = torch.cat([inter, p * k], 1)
        if self.mlp is not None:
            h = self.mlp(torch.cat([pr, kr, inter], 1))
            rating = rating + self.head(h)[:, 0]
            hidden = torch.cat([h, p * k], 1)
        return Output(rating, logit, hidden)

    def pair_logits(self, user, item):
        return self.forward(user, item).logit

    def score_all(self, users: torch.Tensor, items=None) -> torch.Tensor:
        """Ranking logits [len(users), n_items]: one product of the users' vectors with the
        items' (per table, with per-example masks, in an observed step)."""
        p, _, _ = self._user_vectors(users)
        ex = self._example(users)
        if ex is None:
            q, _, c = self._catalogue()
            memo = self._inference_memo()
            if memo is None:
                k = q @ self.rank_item.T
            elif "rank_items" in memo:
                k = memo["rank_items"]
            else:
                k = memo["rank_items"] = q @ self.rank_item.T
            out = p @ k.T + c
            return out if items is None else out[:, items]
        # an observed step: the item side stays one product; the per-example gradients of
        # its units' masks follow from this product's gradient after backward
        # (`_catalogue_mask_gradients`). Masking the users' vectors in item space, z, on a
        # dimension is masking that dimension of every item for those users.
        z = (p @ self.rank_item) * self._mask("dims_item", ex)       # [U, dim]
        q, _, c = self._catalogue()
        out = z @ q.T + c
        if out.requires_grad:
            out.retain_grad()
            self._step.memo.setdefault("scored", []).append((out, z.detach(), ex))
        return out if items is None else out[:, items]

    @torch.no_grad()
    def _catalogue_mask_gradients(self, out: dict[str, torch.Tensor]) -> None:
        """Add the catalogue products' share to the per-example mask gradients ``out``:
        with G the gradient of a product's scores [U, items] and z its users' vectors, an
        item row's mask gets G[n, i] (z_n . row_i + its ranking bias), a table column c at
        space position k gets z_n[k] sum_i G[n, i] table_i[c]."""
        for scores, z, ex in self._step.memo.get("scored", []):
            g = scores.grad
            if g is None:
                continue
            for b, t in enumerate(self.buckets):
                if not len(t.owner):
                    continue
                zb, gb = z[:, self._pos(t.cols)], g[:, t.owner]
                out[f"rows.{b}"].index_add_(0, ex, gb * (zb @ t.weight.T + t.bias[:, 1]))
                out[f"bucket_dims.{b}"].index_add_(0, ex, zb * (gb @ t.weight))
            k = len(self.item_fields)
            for f in self.item_fields:
                v, _ = self._pooled(f.name)
                zf = z[:, self._pos(self.fields[f.name].cols)]
                out[f"field_dims.{f.name}"].index_add_(0, ex, zf * (g @ v) / k)

    def predict(self, user, item):
        return self.forward(user, item).rating

    def _catalogue_q(self, item: int) -> torch.Tensor:
        """Row ``item`` of the catalogue's q, summed in `_catalogue`'s order (so equal to
        the last bit to the row a whole rebuild gives)."""
        q = self._zeros(1, self.dim)
        for t in self.buckets:
            rows = (t.owner == item).nonzero()[:, 0]
            if len(rows):
                q = q.index_put((torch.zeros_like(rows)[:, None], self._pos(t.cols)[None, :]),
                                t.weight.index_select(0, rows), accumulate=True)
        k = len(self.item_fields)
        for f in self.item_fields:
            v, _ = self._pooled_all(f.name, torch.tensor([item]))
            q = q.index_add(1, self._pos(self.fields[f.name].cols), v / k)
        return q[0]

    @torch.no_grad()
    def set_item_row(self, table: int, row: int, weight: torch.Tensor) -> None:
        """Write ID row ``row`` of bucket ``table`` and carry the inference memo over with
        that one item's catalogue row patched, instead of letting the next read rebuild the
        whole catalogue (the service places a new item again on each of its first ratings).
        Users' aggregates and the ranking vectors are dropped from the memo (a history may
        hold the item; a one-row product may differ in the last bit from the whole one)."""
        t = self.buckets[table]
        memo = self._inference_memo()
        t.weight[row] = weight.to(t.weight.dtype)
        if memo is None or "catalogue" not in memo:
            return
        item = int(t.owner[row])
        q = memo["catalogue"][0]
        q[item] = self._catalogue_q(item)
        kept = {k: v for k, v in memo.items()
                if k not in ("tensors", "versions", "inference", "users", "rank_items")}
        self._inference_memo().update(kept)

    @torch.no_grad()
    def history_of(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(user, item, rating) of every rating the student builds its users from."""
        lens = self.hist_indptr[1:] - self.hist_indptr[:-1]
        return (torch.repeat_interleave(torch.arange(len(lens)), lens), self.hist_items.clone(),
                self.hist_ratings.clone())

    @torch.no_grad()
    def users_from(self, users: torch.Tensor, pos: torch.Tensor, item: torch.Tensor,
                   rating: torch.Tensor):
        """(ranking vectors, rating vectors, b_u) of distinct ``users`` (< n_users) built from
        the ratings given - (position in ``users``, item, rating) - in place of their stored
        history: what `with_ratings` would give them, without copying the model (the
        service folds one user in this way)."""
        if self.training:
            self.eval()
        return self._user_vectors(users, (pos.long(), item.long(), rating.to(self._dtype)))

    @torch.no_grad()
    def with_ratings(self, user: torch.Tensor, item: torch.Tensor, rating: torch.Tensor, *,
                     n_users: int | None = None, n_items: int | None = None,
                     item_tokens: dict[str, torch.Tensor] | None = None) -> "TowerStudent":
        """A copy that knows more (fold-in, without training): ratings of new or known users
        join the history the users are built from - a (user, item) pair rated again keeps
        the latest rating - and the catalogue may grow to ``n_items`` (the new items'
        side-field tokens in ``item_tokens``, field -> [new items, max_len]; a new item has
        no ID row: it is its side fields, its popularity its ratings so far). The weights
        are unchanged: a new user's vector is their ratings through the trained maps."""
        old_u, old_i, old_r = self.history_of()
        n_users = max(n_users or 0, self.schema.n_users)
        n_items = max(n_items or 0, self.schema.n_items)
        u = torch.cat([old_u, user.long()])
        i = torch.cat([old_i, item.long()])
        r = torch.cat([old_r, rating.float()])
        if len(u) and (int(u.max()) >= n_users or int(i.max()) >= n_items):
            raise ValueError("a rating names a user or item beyond n_users / n_items")
        key = u * n_items + i
        order = torch.sort(key, stable=True).indices           # the latest of a pair last
        key, u, i, r = key[order], u[order], i[order], r[order]
        last = torch.ones(len(key), dtype=torch.bool)
        last[:-1] = key[1:] != key[:-1]
        u, i, r = u[last], i[last], r[last]
        schema = dataclasses.replace(self.schema, n_users=n_users, n_items=n_items)
        new = type(self)(schema, rating_mean=float(self.rating_mean), tables=None,
                         **{**self.arch(), "history": len(i)})
        sd = self.state_dict()
        for name in list(sd):
            if name.startswith("tokens.tab_"):
                field = name[len("tokens.tab_"):]
                spec = next(f for f in self.schema.fields if f.name == field)
                rows = n_users if spec.side == "user" else n_items
                grown = torch.zeros(rows, sd[name].shape[1], dtype=sd[name].dtype)
                grown[:len(sd[name])] = sd[name]
                extra = (item_tokens or {}).get(field)
                if extra is not None and spec.side == "item":
                    grown[self.schema.n_items:self.schema.n_items + len(extra),
                          :extra.shape[1]] = extra.to(grown.dtype)
                sd[name] = grown
        indptr = torch.zeros(n_users + 1, dtype=torch.long)
        indptr[1:] = torch.bincount(u, minlength=n_users).cumsum(0)
        sd.update(hist_indptr=indptr, hist_items=i, hist_ratings=r)
        counts = torch.expm1(sd["log_pop"].double()).round()
        grown = torch.zeros(n_items, dtype=torch.float64)
        grown[:len(counts)] = counts
        added = torch.bincount(item.long(), minlength=n_items).double()
        sd["log_pop"] = torch.log1p(grown + added).float()
        new.load_state_dict(sd)
        return new.to(self._dtype).eval()

    @torch.no_grad()
    def frozen(self) -> "FrozenTower":
        """The student with every known user's and item's vectors computed once: what an
        exported graph holds (two products and a few gathers, no history to walk)."""
        self.eval()
        users = torch.arange(self.schema.n_users)
        p, pr, b_u = self._user_vectors(users)
        q, b_i, c = self._catalogue()
        return FrozenTower(self, p, pr, b_u, q @ self.rank_item.T, q @ self.rate_item.T, b_i, c)

    # ------------------------------------------------------------------ training helpers
    def task_params(self):
        return None           # both outputs read the shared item space

    def lookup_rows(self, user, item):
        """Rows a batch touches, for row-wise L2: the pairs' items' ID rows."""
        which, row = self._owner_maps(self.buckets, self.schema.n_items)
        out = []
        for b, t in enumerate(self.buckets):
            sel = row[item][which[item] == b]
            if len(sel):
                out.append((t, sel))
        return out

    def param_groups(self, weight_decay: float, extra=()) -> list[dict]:
        rows = [p for n, p in self.named_parameters() if n.startswith(("buckets.", "users."))]
        ids = {id(p) for p in rows}
        dense = [p for p in self.parameters() if id(p) not in ids] + list(extra)
        return [{"params": dense, "weight_decay": weight_decay},
                {"params": rows, "weight_decay": 0.0}]

    def catalogue_user_modules(self) -> list[str]:
        return []

    # ------------------------------------------------------------------ structure
    def structure(self) -> list[Group]:
        """Units: the space's dimensions (a column of every table and of the five maps),
        the ranking and the rating dimensions, each bucket's rows (an item's ID row and
        biases) and columns, each side field's columns, the user rows (``table``), MLP
        neurons. Buffers sliced with them (``cols``, ``owner``, ``space``) keep the rest
        consistent."""
        d = self.dim
        ids = self.space
        k = torch.arange(d).unsqueeze(1)
        dims_sl = [("space", 0, k)]
        for name in ("rank_user", "rank_item", "rate_user", "rate_user_imp", "rate_item"):
            dims_sl.append((name, 1, k))
        tables = [(f"buckets.{b}", t) for b, t in enumerate(self.buckets)] + \
            [(f"fields.{f}", t) for f, t in self.fields.items()]
        if self.users is not None:
            tables.append(("users", self.users))
        for name, t in tables:
            col = torch.full((d, 1), -1, dtype=torch.long)
            at = torch.searchsorted(t.cols, ids).clamp(max=max(0, len(t.cols) - 1))
            hit = (t.cols[at] == ids) if len(t.cols) else torch.zeros(d, dtype=torch.bool)
            col[hit, 0] = at[hit]
            dims_sl += [(f"{name}.weight", 1, col), (f"{name}.cols", 0, col)]
        groups = [Group("dims", "embedding_dim", d, dims_sl)]
        r = torch.arange(self.rank_dims).unsqueeze(1)
        rate_width = self.hidden_sizes[-1] if self.hidden_sizes else self.rate_dims
        groups.append(Group("rank_dims", "mf_factor", self.rank_dims,
                            [("rank_user", 0, r), ("rank_item", 0, r)], hidden=rate_width + r))
        r = torch.arange(self.rate_dims).unsqueeze(1)
        rate_sl = [("rate_user", 0, r), ("rate_user_imp", 0, r), ("rate_item", 0, r)]
        if self.mlp is not None:
            first = "mlp.0.weight"
            rate_sl.append((first, 1, torch.cat([r, r + self.rate_dims, r + 2 * self.rate_dims], 1)))
        groups.append(Group("rate_dims", "mf_factor", self.rate_dims, rate_sl,
                            hidden=None if self.mlp is not None else r))
        for b, t in enumerate(self.buckets):
            n, w = t.weight.shape
            rows = torch.arange(n).unsqueeze(1)
            groups.append(Group(f"rows.{b}", "item_row", n,
                                [(f"buckets.{b}.weight", 0, rows), (f"buckets.{b}.bias", 0, rows),
                                 (f"buckets.{b}.owner", 0, rows)], min_units=0, floor=False))
            c = torch.arange(w).unsqueeze(1)
            groups.append(Group(f"bucket_dims.{b}", "embedding_dim", w,
                                [(f"buckets.{b}.weight", 1, c), (f"buckets.{b}.cols", 0, c)]))
        for f, t in self.fields.items():
            c = torch.arange(t.weight.shape[1]).unsqueeze(1)
            groups.append(Group(f"field_dims.{f}", "embedding_dim", t.weight.shape[1],
                                [(f"fields.{f}.weight", 1, c), (f"fields.{f}.cols", 0, c)]))
        if self.users is not None:
            n, w = self.users.weight.shape
            rows = torch.arange(n).unsqueeze(1)
            groups.append(Group("user_rows", "user_row", n,
                                [("users.weight", 0, rows), ("users.bias", 0, rows),
                                 ("users.owner", 0, rows)], min_units=0, floor=False))
            c = torch.arange(w).unsqueeze(1)
            groups.append(Group("user_dims", "embedding_dim", w,
                                [("users.weight", 1, c), ("users.cols", 0, c)]))
        if self.mlp is not None:
            groups += neuron_groups("mlp", self.mlp, [("head.weight", 1, 0)], arch_key="hidden",
                                    hidden_offset=0)
        return groups


class FrozenTower(RecModel):
    """A `TowerStudent`'s outputs as fixed user and item vectors (`TowerStudent.frozen`):
    scores and ratings of the known users and items, in plain tensor expressions that trace
    into an ONNX graph."""
    kind = "tower_student"
    one_pass_score_all = True

    def __init__(self, tower: TowerStudent, p, pr, b_u, k, kr, b_i, c):
        super().__init__(tower.schema, float(tower.rating_mean))
        for name, t in (("user_rank", p), ("user_rate", pr), ("user_bias", b_u),
                        ("item_rank", k), ("item_rate", kr), ("item_bias", b_i),
                        ("item_rank_bias", c)):
            self.register_buffer(name, t.detach().clone().contiguous())
        self.mlp, self.head = tower.mlp, tower.head

    def forward(self, user, item) -> Output:
        p, pr = self.user_rank[user], self.user_rate[user]
        k, kr = self.item_rank[item], self.item_rate[item]
        inter = pr * kr
        rating = self.rating_mean + self.user_bias[user] + self.item_bias[item] + inter.sum(1)
        if self.mlp is not None:
            rating = rating + self.head(self.mlp(torch.cat([pr, kr, inter], 1)))[:, 0]
        return Output(rating, self.item_rank_bias[item] + (p * k).sum(1), inter)

    def score_all(self, users, items=None):
        out = self.user_rank[users] @ self.item_rank.T + self.item_rank_bias
        return out if items is None else out[:, items]


def popularity_buckets(counts: torch.Tensor, buckets: int) -> list[torch.Tensor]:
    """Items with train ratings, most rated first, cut into ``buckets`` groups holding about
    equal shares of the train ratings (ties: lower index first): the head's few popular
    items form the first bucket, the long tail the last."""
    order = torch.argsort(-counts.to(torch.float64), stable=True)
    order = order[counts[order] > 0]
    share = counts[order].double().cumsum(0) / max(1, int(counts.sum()))
    edge = torch.clamp((share * buckets - 1e-9).floor().long(), 0, buckets - 1)
    return [order[edge == b] for b in range(buckets)]


def tower_tables(enc, buckets: int, users_with_rows: bool = False) -> tuple[dict, dict]:
    """(tables, arch entries) a dense `TowerStudent` needs from the encoded data: the token
    tables, the train history (CSR with ratings), each item's log train count and the
    items of each popularity bucket."""
    tr = enc.parts["train"]
    n_users, n_items = enc.n_users, enc.n_items
    order = torch.argsort(tr.user * n_items + tr.item)
    users, items, ratings = tr.user[order], tr.item[order], tr.rating[order]
    indptr = torch.zeros(n_users + 1, dtype=torch.long)
    indptr[1:] = torch.bincount(users, minlength=n_users).cumsum(0)
    counts = torch.bincount(tr.item, minlength=n_items)
    groups = popularity_buckets(counts, buckets)
    tables = dict(enc.tables)
    tables.update(hist_indptr=indptr, hist_items=items, hist_ratings=ratings.float(),
                  log_pop=torch.log1p(counts.double()).float(), bucket_owner=groups)
    arch = {"bucket_rows": [len(g) for g in groups], "history": len(items)}
    if users_with_rows:
        tables["user_owner"] = torch.arange(n_users)
        arch["user_rows"] = n_users
    return tables, arch
