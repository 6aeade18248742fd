"""Fold-in: a student learns of new ratings, users and items without training.

Every student pakd distills scores a (user, item) pair from a few vectors per user and per
item (`FrozenTower`'s form: a ranking vector and a rating vector each, biases, the rating
MLP). `LiveRows` holds those vectors for every user and item with room to grow, and a
`Fold` - one per student kind - says how a user's vectors follow from their ratings and
how a new item's follow from its side fields, against the frozen rest of the model:

- ``tower_student``: a user *is* the items they rated (`TowerStudent.users_from`), so a
  new or refreshed user is exact - the vectors a model whose history holds those ratings
  (`TowerStudent.with_ratings`) gives them; every rating adds to its item's popularity
  term. A new item starts as its side fields and is placed by its first ratings
  (`TowerFold.item_from_raters`, `TowerFold.new_item_bias`): a row of its own in a bucket
  of new items (`TowerFold.table`), so that the saved student holds it too.
- ``lightweight_model`` (a user ID table): closed-form least squares against the frozen
  item side (`LightweightFold.solve`): the rating vector and bias by ridge regression of
  the ratings on the items' rating vectors, the ranking vector by one Newton step of the
  full-catalogue softmax loss from zero (its second-order expansion there, a weighted least
  squares). The rating MLP, when the student has one, is not part of the solve. A new item
  reads token 0 of the item ID (a zero row): its side fields alone.

`Fold.saved` writes the fold into an ordinary student of the same kind (what `pakd update`
saves: `pakd export` and `pakd serve` take it like any other).

Why new items need more than their side fields: the tower student's ranking leans on its
popularity term w log(1 + n_i), and a film added a minute ago has n_i = 0 - below every
trained item, so it never reached anyone's top-10 (temporal replay, docs/live.md). Its
count is not comparable with a trained item's: those counted ratings over the whole train
window, the new item only since it was added. `new_item_bias` estimates the count it would
have over a window as long, from its ratings and its exposure (the ratings anyone gave
since it was added), shrunk toward a prior fitted to the trained items' counts
(gamma-Poisson). Its vector moves from the side fields' toward the users who rated it
(`item_from_raters`).
"""
from __future__ import annotations

import dataclasses
import torch

from ..errors import PakdError
from ..models import LightweightStudent, RecModel, TowerStudent
from ..models.tower import FrozenTower

ROW_NAMES = ("user_rank", "user_rate", "user_bias", "item_rank", "item_rate", "item_bias",
             "item_rank_bias")
USER_CHUNK = 1024          # new users' room is made this many at a time (one model copy)
FIRST_RATINGS = 50         # a new item's vector follows its first this many raters, then stays


class LiveRows(FrozenTower):
    """Every user's and item's vectors (`FrozenTower`), stored with spare rows: adding a
    user or an item writes a row, and the buffers are views of the first n rows."""

    def __init__(self, owner, p, pr, b_u, k, kr, b_i, c):
        super().__init__(owner, p, pr, b_u, k, kr, b_i, c)
        if self.head is None:                   # a student without a rating MLP
            self.mlp = None
        self._cap = {n: getattr(self, n).clone() for n in ROW_NAMES}
        for n in ROW_NAMES:                     # the rows are views of the storage from now
            setattr(self, n, self._cap[n][:len(self._cap[n])])
        self.eval()

    def _room(self, names, n: int) -> None:
        for name in names:
            cap = self._cap[name]
            if n > len(cap):
                grown = cap.new_zeros((max(n, 2 * len(cap)),) + tuple(cap.shape[1:]))
                grown[:len(cap)] = cap
                self._cap[name] = cap = grown
            setattr(self, name, cap[:n])

    def resize(self, n_users: int, n_items: int) -> None:
        self._room(ROW_NAMES[:3], n_users)
        self._room(ROW_NAMES[3:], n_items)
        self.schema = dataclasses.replace(self.schema, n_users=n_users, n_items=n_items)

    def set_users(self, users: torch.Tensor, p, pr, b_u) -> None:
        self.user_rank[users], self.user_rate[users], self.user_bias[users] = p, pr, b_u

    def set_items(self, items: torch.Tensor, k, kr, b_i, c) -> None:
        self.item_rank[items], self.item_rate[items] = k, kr
        self.item_bias[items], self.item_rank_bias[items] = b_i, c


def fold_for(model: RecModel) -> "Fold":
    """The fold-in of ``model``'s kind, or a `PakdError` naming the kinds that have one."""
    if isinstance(model, TowerStudent):
        return TowerFold(model)
    if isinstance(model, LightweightStudent):
        return LightweightFold(model)
    raise PakdError(f"a {model.kind} cannot take new ratings without training: fold-in "
                    "works for the students (tower_student, lightweight_model); serve or "
                    "update a saved student, not a teacher")


class Fold:
    """The model-specific part of fold-in (see the module docstring)."""

    model: RecModel
    places_items = False       # new items placed by their ratings (`item_from_raters`)

    def rows(self) -> LiveRows:  # pragma: no cover - per kind
        raise NotImplementedError

    def users(self, users: torch.Tensor, pos: torch.Tensor, item: torch.Tensor,
              rating: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ranking vectors, rating vectors, biases) of ``users`` from exactly the ratings
        (position in ``users``, item, rating): the train ones kept and the new ones."""
        raise NotImplementedError  # pragma: no cover

    def add_users(self, n_users: int) -> None:
        """Make room for users up to ``n_users`` (index order)."""

    def add_items(self, tokens: dict[str, torch.Tensor], n_new: int):
        """(k, kr, b_i, c) of ``n_new`` items appended to the catalogue, from their
        side-field tokens (field -> [n_new, width])."""
        raise NotImplementedError  # pragma: no cover

    def rated(self, items: torch.Tensor, counts: torch.Tensor) -> torch.Tensor | None:
        """The new ranking biases of ``items`` whose rating counts are now ``counts``
        (None: the model has no popularity term)."""
        return None

    def base_counts(self) -> torch.Tensor | None:
        return None

    def base_history(self):
        """(user, item, rating) the model builds its users from, or None when it keeps none
        (the run's ratings stand in then)."""
        return None

    def saved(self, live: tuple[torch.Tensor, torch.Tensor, torch.Tensor], *, n_users: int,
              n_items: int, item_tokens: dict[str, torch.Tensor], ratings_of,
              rows: LiveRows | None = None) -> RecModel:
        """The student as it was loaded with every fold applied, as an ordinary model of its
        kind: ``live`` the new ratings (the latest of each pair), ``item_tokens`` the new
        items' tokens in order, ``ratings_of(users)`` every rating of those users, as
        (position in ``users``, item, rating); ``rows`` the live vectors (the new items'
        placement, for a fold that `places_items`)."""
        raise NotImplementedError  # pragma: no cover


class TowerFold(Fold):
    """``tower_student``: users from their ratings through the trained maps (exact); new
    items from their side fields, then from their first ratings (module docstring)."""

    places_items = True

    def __init__(self, model: TowerStudent):
        self.model = self._base = model.eval()
        pop = model.log_pop.double()
        self._counts = torch.expm1(pop).round()
        self._static = None          # ranking bias without the popularity term
        self.table: int | None = None          # the bucket of new items' rows, once made
        self.prior = self._fit_prior(self._counts)
        self._basis = None

    # ------------------------------------------------------------------ the users
    @torch.no_grad()
    def rows(self) -> LiveRows:
        f = self.model.frozen()
        self._static = (f.item_rank_bias - self.model.pop_weight.detach() * self.model.log_pop)
        self._side = self._static.clone()      # new items: without the placement saved
        if self.table is not None and self.table < len(self.model.buckets):
            t = self.model.buckets[self.table]
            self._side[t.owner] -= t.bias[:, 1].detach()
        return LiveRows(self.model, f.user_rank, f.user_rate, f.user_bias, f.item_rank,
                        f.item_rate, f.item_bias, f.item_rank_bias)

    def base_counts(self) -> torch.Tensor:
        return self._counts.clone()

    def base_history(self):
        return self.model.history_of()

    def users(self, users, pos, item, rating):
        return self.model.users_from(users, pos, item, rating)

    def add_users(self, n_users: int) -> None:
        if n_users > self.model.schema.n_users:
            empty = torch.zeros(0, dtype=torch.long)
            self.model = self.model.with_ratings(empty, empty, empty.float(),
                                                 n_users=n_users + USER_CHUNK)

    # ------------------------------------------------------------------ new items
    @staticmethod
    def _fit_prior(counts: torch.Tensor) -> list[float]:
        """(a, b, N): a gamma prior Gamma(a, b) of an item's rating count over a window of
        N ratings (the train window), by the moments of the trained items' counts
        (negative binomial: var = mean + mean^2 / a)."""
        c = counts.double()
        c = c[c > 0] if bool((c > 0).any()) else torch.ones(1, dtype=torch.float64)
        mean, var = float(c.mean()), float(c.var()) if len(c) > 1 else 0.0
        a = mean * mean / max(var - mean, 1e-6 * mean)
        return [a, a / mean, float(c.sum())]

    def resume(self, record: dict) -> None:
        """Carry on a student grown by `pakd update`: its bucket of new items and the prior
        it was placed with (``record``: its catalogue's ``new_items``)."""
        table = record.get("table")
        if table is not None and 0 <= int(table) < len(self.model.buckets):
            self.table = int(table)
        if len(record.get("prior") or []) == 3:
            self.prior = [float(x) for x in record["prior"]]

    def record(self) -> dict:
        return {"table": self.table, "prior": self.prior}

    @torch.no_grad()
    def new_item_bias(self, items: torch.Tensor, counts: torch.Tensor,
                      exposure: torch.Tensor) -> torch.Tensor:
        """Ranking biases of the new ``items`` with ``counts`` ratings, ``exposure`` ratings
        (by anyone) after each was added: c = its side fields' bias + w log(1 + n), n the
        count it would have over the train window - the posterior mean of a gamma-Poisson
        rate, (a + count) / (b + exposure / N) - so a fresh item starts as a typical one and
        one rated by many soon after it arrived ranks like a popular one."""
        a, b, n = self.prior
        n_eff = (a + counts.double()) / (b + exposure.double() / n)
        w = self.model.pop_weight.detach().double()
        return (self._side[items].double() + w * torch.log1p(n_eff)).to(self._static.dtype)

    @torch.no_grad()
    def add_items(self, tokens, n_new):
        m = self.model
        n0 = m.schema.n_items
        empty = torch.zeros(0, dtype=torch.long)
        self.model = m = m.with_ratings(empty, empty, empty.float(), n_items=n0 + n_new,
                                        item_tokens=tokens)
        self._grow_table(torch.arange(n0, n0 + n_new))
        q, b, c = m._catalogue()
        new = slice(n0, n0 + n_new)
        static = c[new] - m.pop_weight * m.log_pop[new]
        self._static = torch.cat([self._static, static])
        self._side = torch.cat([self._side, static])
        return (q[new] @ m.rank_item.T, q[new] @ m.rate_item.T, b[new], c[new])

    def _grow_table(self, items: torch.Tensor) -> None:
        """Zero rows for ``items`` in the bucket of new items (made on the first one: a
        full-width table of the model's space, after the trained buckets)."""
        m = self.model
        if self.table is None:
            self.table = len(m.buckets)
            m.buckets.append(_table(m, 0))
        old = m.buckets[self.table]
        t = _table(m, len(old.owner) + len(items))
        t.weight[:len(old.owner)] = old.weight
        t.bias[:len(old.owner)] = old.bias
        t.owner[:len(old.owner)] = old.owner
        t.owner[len(old.owner):] = items
        m.buckets[self.table] = t

    @torch.no_grad()
    def _prior_basis(self):
        """(V, 1/lambda): the eigenvectors and inverse eigenvalues of the trained ID rows'
        second moment in item space (the spread of items around their side fields: the
        prior of a new item's vector around its side fields' one); directions no trained
        row uses are left out (a new item does not move there)."""
        if self._basis is None:
            m = self._base
            dim = m.dim
            sec = torch.zeros(dim, dim, dtype=torch.float64)
            n = 0
            for b, t in enumerate(m.buckets):
                if b == self.table or not len(t.owner):
                    continue
                w = torch.zeros(len(t.owner), dim, dtype=torch.float64)
                w[:, m._pos(t.cols)] = t.weight.double()
                sec += w.T @ w
                n += len(t.owner)
            lam, vec = torch.linalg.eigh(sec / max(n, 1))
            keep = lam > 1e-9 * max(float(lam.max()), 1e-300)
            self._basis = (vec[:, keep], 1.0 / lam[keep])
        return self._basis

    @torch.no_grad()
    def item_from_raters(self, item: int, raters: torch.Tensor, pos: torch.Tensor,
                         other: torch.Tensor, rating: torch.Tensor, user_rank: torch.Tensor,
                         activity: torch.Tensor):
        """Place new ``item`` by the users who rated it: one Newton step, from its side
        fields' vector, of the log-likelihood that these users - among all, weighted by how
        many ratings each gave (``activity``) - are the ones who rated it, under the
        student's own ranking score (user . item in item space), with a Gaussian prior
        around the side fields' vector whose covariance is the trained ID rows'
        (`_prior_basis`). The raters' vectors leave the item out (as training leaves the
        predicted pair out of a user's history): ``pos``, ``other``, ``rating`` are their
        other ratings. Writes the item's row and returns (k, kr, b_i) of the item."""
        m = self.model
        w_rank = m.rank_item.detach().double()
        z_all = user_rank.double() @ w_rank                       # users in item space
        p_raters, _, _ = m.users_from(raters, pos, other, rating)
        z = p_raters.double() @ w_rank
        a = activity.double()
        a = a / a.sum().clamp(min=1e-300)
        mean = a @ z_all
        cov = (z_all * a[:, None]).T @ z_all - torch.outer(mean, mean)
        g = (z - mean).sum(0)
        vec, inv_lam = self._prior_basis()
        h = len(raters) * vec.T @ cov @ vec + torch.diag(inv_lam)
        dq = vec @ torch.linalg.solve(h, vec.T @ g)
        t = m.buckets[self.table]
        row = int((t.owner == item).nonzero()[0, 0])
        m.set_item_row(self.table, row, dq[m._pos(t.cols)])
        q, b, _ = m._catalogue()
        return q[item] @ m.rank_item.T, q[item] @ m.rate_item.T, b[item]

    @torch.no_grad()
    def rated(self, items, counts):
        """c_i = its bias + w log(1 + n_i): the popularity term of `TowerStudent`."""
        return (self._static[items] + self.model.pop_weight.detach()
                * torch.log1p(counts.double()).float()).to(self._static.dtype)

    @torch.no_grad()
    def saved(self, live, *, n_users, n_items, item_tokens, ratings_of, rows=None):
        """The base student with the ratings in its history (`TowerStudent.with_ratings`),
        and the bucket of new items: their rows as placed here, each ranking bias set so
        that the saved student ranks them as the live one does."""
        out = self._base.with_ratings(*live, n_users=n_users, n_items=n_items,
                                      item_tokens=item_tokens)
        if self.table is not None:
            t = self.model.buckets[self.table]
            mine = _table(out, len(t.owner))
            mine.load_state_dict(t.state_dict())
            if self.table < len(out.buckets):
                out.buckets[self.table] = mine
            else:
                out.buckets.append(mine)
            if rows is not None and len(t.owner):
                mine.bias[:, 1] = 0.0
                _, _, c = out._catalogue()
                mine.bias[:, 1] = rows.item_rank_bias[t.owner] - c[t.owner]
        return _with_ids(out, n_users)


class LightweightFold(Fold):
    """``lightweight_model``: closed-form least squares against the frozen item side."""

    RIDGE = 1.0          # L2 strength of both solves (in units of one rating's squared error)

    def __init__(self, model: LightweightStudent):
        self.model = self._base = model.eval()
        self._cat = self._item_side = None

    @torch.no_grad()
    def _user_side(self, users: torch.Tensor):
        m = self.model
        from ..models.student import _pool
        known = users < m.schema.n_users
        dt = next(m.parameters()).dtype
        p = torch.zeros(len(users), m.factors, dtype=dt)
        pk = torch.zeros(len(users), m.rank_factors, dtype=dt)
        b = torch.zeros(len(users), dtype=dt)
        if known.any():
            u = users[known]
            p[known] = _pool(m.embedding.side_of(u, "user"))
            pk[known] = _pool(m.rank_embedding.side_of(u, "user"))
            b[known] = m.bias.side_of(u, "user")[:, 0, 0]
        return p, pk, b

    @torch.no_grad()
    def _items(self):
        """(rating vectors, their biases, ranking vectors, ranking biases) of the catalogue,
        kept until the catalogue grows (`add_items`)."""
        if self._item_side is None:
            m = self.model
            q, qk, c = m._catalogue()
            b = m.bias.side_of(torch.arange(m.schema.n_items), "item")[:, 0, 0]
            self._item_side = (q, b, qk, c)
        return self._item_side

    @torch.no_grad()
    def rows(self) -> LiveRows:
        users = torch.arange(self.model.schema.n_users)
        p, pk, b_u = self._user_side(users)
        q, b_i, qk, c = self._items()
        self._cat = None
        return LiveRows(self.model, pk, p, b_u, qk, q, b_i, c)

    @torch.no_grad()
    def _softmax_moments(self):
        """(mean, covariance) of the ranking vectors under softmax(ranking biases): the
        catalogue's part of the Newton step, shared by every user until items change."""
        if self._cat is None:
            _, _, qk, c = self._items()
            pi = torch.softmax(c.double(), 0)
            qd = qk.double()
            mu = pi @ qd
            cov = (qd * pi[:, None]).T @ qd - torch.outer(mu, mu)
            self._cat = (mu, cov, qd)
        return self._cat

    @torch.no_grad()
    def solve(self, item: torch.Tensor, rating: torch.Tensor):
        """(ranking vector, rating vector, bias) of one user from their ratings:
        rating side  min_{p, b} sum_i (r_i - mu - b_i - b - p.q_i)^2 + RIDGE (|p|^2 + b^2)
        ranking side p' = (n S + RIDGE I)^-1 sum_i (q'_i - m), m and S the mean and
                     covariance of the ranking vectors under softmax(c) (one Newton step of
                     the softmax loss of the n rated items from p' = 0)."""
        m = self.model
        q, b_i, _, _ = self._items()
        mu_r = float(m.rating_mean)
        n = len(item)
        x = torch.cat([q[item].double(), torch.ones(n, 1, dtype=torch.float64)], 1)
        y = rating.double() - mu_r - b_i[item].double()
        a = x.T @ x + self.RIDGE * torch.eye(x.shape[1], dtype=torch.float64)
        theta = torch.linalg.solve(a, x.T @ y)
        mean, cov, qk = self._softmax_moments()
        g = (qk[item] - mean).sum(0)
        pk = torch.linalg.solve(n * cov + self.RIDGE * torch.eye(len(g), dtype=torch.float64), g)
        dt = q.dtype
        return pk.to(dt), theta[:-1].to(dt), theta[-1].to(dt)

    @torch.no_grad()
    def users(self, users, pos, item, rating):
        p_rate, p_rank, bias = self._user_side(users)
        for k in range(len(users)):
            sel = pos == k
            if sel.any():
                p_rank[k], p_rate[k], bias[k] = self.solve(item[sel], rating[sel])
        return p_rank, p_rate, bias

    @torch.no_grad()
    def add_items(self, tokens, n_new):
        self.model = _grown_lightweight(self.model, n_users=self.model.schema.n_users,
                                        n_items=self.model.schema.n_items + n_new,
                                        item_tokens=tokens)
        self._cat = self._item_side = None
        q, b, qk, c = self._items()
        new = slice(len(q) - n_new, len(q))
        return qk[new], q[new], b[new], c[new]

    @torch.no_grad()
    def saved(self, live, *, n_users, n_items, item_tokens, ratings_of, rows=None):
        """A lightweight student whose user ID rows hold the folded users' solved vectors
        (the pooled vector minus the user's side fields: the side stays as trained)."""
        out = _grown_lightweight(self._base, n_users=n_users, n_items=n_items,
                                 item_tokens=item_tokens)
        fold = LightweightFold(out)
        users = torch.unique(live[0])
        if len(users):
            p_rank, p_rate, bias = fold.users(users, *ratings_of(users))
            side_rate, side_rank, side_b = fold._user_side(users)
            tok = out.tokens.get("user_id")[users, 0].long()
            with torch.no_grad():
                for emb, vec, now in ((out.embedding, p_rate, side_rate),
                                      (out.rank_embedding, p_rank, side_rank)):
                    w = emb.emb["user_id"].weight
                    w[tok] = vec - (now - w[tok])        # keep the side-field share
                bw = out.bias.emb["user_id"].weight
                bw[tok, 0] = bias - (side_b - bw[tok, 0])
        return out.eval()


def _table(model: TowerStudent, rows: int):
    """An empty ID table of ``rows`` rows across the model's whole space (zeros)."""
    from ..models.tower import Table
    t = Table(rows, len(model.space), True, 0.0).to(model.rank_user.dtype)
    with torch.no_grad():
        t.weight.zero_()
        t.cols.copy_(model.space)
    return t


def _with_ids(model: RecModel, n_users: int) -> RecModel:
    """The ID fields' vocabularies follow the grown user and item counts (1 + count)."""
    fields = [dataclasses.replace(f, vocab_size=n_users + 1) if f.name == "user_id" else f
              for f in model.schema.fields]
    model.schema = dataclasses.replace(model.schema, fields=fields)
    return model


def _grown_lightweight(m: LightweightStudent, *, n_users: int, n_items: int,
                       item_tokens: dict[str, torch.Tensor]) -> LightweightStudent:
    """A copy with room for ``n_users`` and ``n_items``: each new user an ID token of their
    own (a zero row until solved), each new item token 0 of the item ID (no row) and its
    side-field tokens."""
    s = m.schema
    fields = [dataclasses.replace(f, vocab_size=n_users + 1) if f.name == "user_id" else f
              for f in s.fields]
    schema = dataclasses.replace(s, fields=fields, n_users=n_users, n_items=n_items)
    sd = m.state_dict()
    for name in list(sd):
        t = sd[name]
        if name.startswith("tokens.tab_"):
            field = name[len("tokens.tab_"):]
            spec = next((f for f in s.fields if f.name == field), None)
            side = spec.side if spec is not None else "item"       # tab_item_rows
            rows = n_users if side == "user" else n_items
            grown = torch.zeros(rows, t.shape[1], dtype=t.dtype)
            grown[:len(t)] = t
            if field == "user_id":
                grown[s.n_users:, 0] = torch.arange(s.n_users + 1, n_users + 1, dtype=t.dtype)
            extra = item_tokens.get(field)
            if extra is not None and side == "item":
                grown[s.n_items:s.n_items + len(extra), :extra.shape[1]] = extra.to(t.dtype)
            sd[name] = grown
        elif name.endswith("emb.user_id.weight"):
            grown = t.new_zeros(n_users + 1, t.shape[1])
            grown[:len(t)] = t
            sd[name] = grown
    out = LightweightStudent(schema, rating_mean=float(m.rating_mean), tables=None,
                             **m.arch())
    out.load_state_dict(sd)
    return out.to(next(m.parameters()).dtype).eval()


