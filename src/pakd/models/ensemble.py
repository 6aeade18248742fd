"""The ensemble teacher: members combined per output, itself a `RecModel`.

A member's task decides what it feeds: ``rating`` -> the rating output, ``ranking`` -> the
ranking output, ``balance`` -> both. ``weights`` are the members' weights as given; the
mix of each output (``rating_mix``, ``ranking_mix``) renormalises them over the members
that feed it (weights fitted with ``auto`` are used as fitted). Ranking logits of different
models live on different scales (an MF dot product vs a BCE-trained network), so before
they are mixed each member's logit is standardised - a convex mix of z-scores:

- ``standardise="user"``: with the mean and standard deviation of the member's scores over
  each user's own unseen items (`calibrate_users`). How spread a member's scores are differs
  from user to user (EASE's rows grow with the user's history), and the mix then gives
  each member the same say in every user's list;
- ``standardise="catalogue"``: with one mean and standard deviation per member, over the
  whole catalogue for a sample of users (`calibrate`).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PakdError
from .base import Group, Output, RecModel

TASKS = ("rating", "ranking", "balance")
STANDARDISE = ("user", "catalogue")


def default_task(outputs: tuple[str, ...]) -> str:
    """A member's task from what it predicts (`RecModel.outputs`): balance for members that
    rate and rank, rating or ranking for those that do one."""
    return ("balance" if {"rating", "ranking"} <= set(outputs)
            else "rating" if "rating" in outputs else "ranking")


class Ensemble(RecModel):
    kind = "ensemble"

    def __init__(self, members: dict[str, RecModel], weights: dict[str, float],
                 tasks: dict[str, str], rating_mix: dict[str, float] | None = None,
                 ranking_mix: dict[str, float] | None = None, standardise: str = "catalogue",
                 rating_offset: float = 0.0):
        first = next(iter(members.values()))
        super().__init__(first.schema, float(first.rating_mean))
        for name, t in tasks.items():
            if t not in TASKS:
                raise PakdError(f"task {t!r} of {name} must be one of {', '.join(TASKS)}")
        self.members = nn.ModuleDict(members)
        self.weights, self.tasks = dict(weights), dict(tasks)
        self.rating_mix = rating_mix or _renorm(
            {n: w for n, w in weights.items() if tasks[n] in ("rating", "balance")}, "rating")
        self.ranking_mix = ranking_mix or _renorm(
            {n: w for n, w in weights.items() if tasks[n] in ("ranking", "balance")}, "ranking")
        if standardise not in STANDARDISE:
            raise PakdError(f"standardise {standardise!r} must be one of "
                            f"{', '.join(STANDARDISE)}")
        self.standardise = standardise
        self.rating_offset = float(rating_offset)     # added to the rating mix (auto fit)
        self.register_buffer("logit_mean", torch.zeros(len(members)))
        self.register_buffer("logit_std", torch.ones(len(members)))
        rows = first.schema.n_users if standardise == "user" else 0
        self.register_buffer("user_mean", torch.zeros(rows, len(members)))
        self.register_buffer("user_std", torch.ones(rows, len(members)))
        self._pos = {n: k for k, n in enumerate(members)}

    def arch(self) -> dict:
        """The plain config; with ``standardise="user"`` the per-user statistics are tensors
        (`user_stats`), saved beside it."""
        return {"members": list(self.members), "weights": self.weights, "tasks": self.tasks,
                "rating_mix": self.rating_mix, "ranking_mix": self.ranking_mix,
                "rating_offset": self.rating_offset, "standardise": self.standardise,
                "logit_mean": self.logit_mean.tolist(), "logit_std": self.logit_std.tolist()}

    def user_stats(self) -> dict[str, torch.Tensor]:
        return {"user_mean": self.user_mean, "user_std": self.user_std}

    def standardisation(self) -> dict:
        """Each member's logit [mean, std] for reports (per user: their medians)."""
        if self.standardise == "user":
            return {"per": "user", **{n: [float(self.user_mean[:, k].median()),
                                          float(self.user_std[:, k].median())]
                                      for n, k in self._pos.items()}}
        return {n: [float(self.logit_mean[k]), float(self.logit_std[k])]
                for n, k in self._pos.items()}

    @classmethod
    def from_arch(cls, arch: dict, members: dict[str, RecModel],
                  user_stats: dict[str, torch.Tensor] | None = None) -> "Ensemble":
        """The ensemble an `arch()` (and, standardised per user, its `user_stats`) describes,
        over already loaded members (ensembles saved before the mixes were renamed store them
        as rating_weights / ranking_weights; before per-user standardisation, per catalogue;
        before the rating offset, none)."""
        ens = cls(members, arch["weights"], arch["tasks"],
                  arch.get("rating_mix", arch.get("rating_weights")),
                  arch.get("ranking_mix", arch.get("ranking_weights")),
                  arch.get("standardise", "catalogue"), arch.get("rating_offset", 0.0))
        ens.logit_mean.copy_(torch.tensor(arch["logit_mean"]))
        ens.logit_std.copy_(torch.tensor(arch["logit_std"]))
        if ens.standardise == "user":
            if user_stats is None:
                raise PakdError("an ensemble standardised per user needs its user_mean and "
                                "user_std; run `pakd ensemble` again to write them")
            for k, v in ens.user_stats().items():
                if user_stats[k].shape != v.shape:
                    raise PakdError(f"{k} has shape {tuple(user_stats[k].shape)}, the ensemble "
                                    f"{tuple(v.shape)} (users x members): run `pakd ensemble` "
                                    "again")
                v.copy_(user_stats[k])
        return ens.eval()

    def frozen(self) -> "Ensemble":
        """The same ensemble over its members' exported forms: a member whose vectors are
        computed from the data (LightGCN, SASRec) is frozen to those vectors
        (`pakd.models.frozen`), the others are used as they are."""
        members = {n: m.frozen() if hasattr(m, "frozen") else m for n, m in self.members.items()}
        return Ensemble.from_arch(self.arch(), members, self.user_stats())

    @torch.no_grad()
    def calibrate(self, n_users: int, sample: int = 128, seed: int = 0,
                  scores: dict[str, torch.Tensor] | None = None) -> None:
        """Fix each ranking member's logit mean/std over the catalogue for a user sample."""
        g = torch.Generator().manual_seed(seed)
        users = torch.randperm(n_users, generator=g)[:sample]
        for name, m in self.members.items():
            s = scores[name][users] if scores and name in scores else m.score_all(users)
            k = self._pos[name]
            self.logit_mean[k] = s.mean()
            self.logit_std[k] = s.std().clamp(min=1e-8)

    @torch.no_grad()
    def calibrate_users(self, seen, scores: dict[str, torch.Tensor | None] | None = None,
                        chunk: int = 1024) -> None:
        """Fix each member's logit mean/std per user over the items the user did not rate in
        train (``seen``: users x items CSR), from the cached ``scores`` or member rows scored
        ``chunk`` users at a time (a user who rated every item: over the whole catalogue)."""
        n_users = self.user_mean.shape[0]
        for a in range(0, n_users, chunk):       # each chunk's rated items made dense once
            users = torch.arange(a, min(a + chunk, n_users))
            rated = torch.from_numpy(seen[a:a + len(users)].toarray())
            rated &= ~rated.all(1, keepdim=True)
            n = (~rated).sum(1)
            for name, m in self.members.items():
                k = self._pos[name]
                s = (scores[name][users] if scores and scores.get(name) is not None
                     else m.score_all(users)).double()
                mean = s.masked_fill(rated, 0.0).sum(1) / n
                var = ((s - mean[:, None]) ** 2).masked_fill(rated, 0.0).sum(1) / n
                self.user_mean[users, k] = mean.to(self.user_mean.dtype)
                self.user_std[users, k] = var.sqrt().clamp(min=1e-8).to(self.user_std.dtype)

    def fit_rating_mix(self, predictions: dict[str, torch.Tensor], ratings: torch.Tensor,
                       offset: bool = False) -> None:
        """Rating weights in closed form: non-negative least squares of the (valid)
        ``ratings`` on the rating members' ``predictions`` of the same pairs; with ``offset``
        a constant of either sign beside them (`rating_offset`: members that all predict
        too high or too low on held-out pairs are moved together)."""
        from scipy.optimize import nnls
        names = list(self.rating_mix)
        X = torch.stack([predictions[n] for n in names], 1).double().numpy()
        if offset:          # the constant as two non-negative columns, +1 and -1
            X = np.hstack([X, np.ones((len(X), 1)), -np.ones((len(X), 1))])
        w, _ = nnls(X, ratings.double().numpy())
        self.rating_mix = {n: float(v) for n, v in zip(names, w)}
        self.rating_offset = float(w[len(names)] - w[len(names) + 1]) if offset else 0.0

    def fit_ranking_mix(self, logits: dict[str, torch.Tensor], users: torch.Tensor, valid_ndcg,
                        quiet: bool = True) -> float:
        """Ranking weights: the convex mix of the ranking members' standardised ``logits``
        (rows of ``users``) whose ``valid_ndcg(scores)`` is best
        (`pakd.train.select.best_on_simplex`); returns that NDCG@10."""
        from ..train.select import best_on_simplex     # pakd.train imports the models
        names = list(self.ranking_mix)
        z = {n: self._z(n, logits[n], users) for n in names}
        best_w, best = best_on_simplex(
            names, lambda w: valid_ndcg(sum(c * z[n] for c, n in zip(w, names) if c > 0)),
            quiet=quiet)
        self.ranking_mix = {n: float(c) for c, n in zip(best_w, names)}
        return best

    def fit_ranking_likelihood(self, logits: dict[str, torch.Tensor], users: torch.Tensor,
                               seen: torch.Tensor, held: tuple[torch.Tensor, torch.Tensor],
                               ) -> float:
        """Ranking weights that make the held-out items likeliest: the non-negative weights
        w of the members' standardised ``logits`` (rows of ``users``) maximising the mean
        log softmax of sum_m w_m z_m over each user's unseen items (``seen`` masks the train
        items) at the ``held`` (row, item) pairs - the valid items. A smooth objective of
        every held-out item, where NDCG@10 counts a few per user and moves in steps.
        Returns that mean log-likelihood; the weights are kept summing to one (the
        softmax's scale, a temperature, says nothing about the order)."""
        names = list(self.ranking_mix)
        z = torch.stack([self._z(n, logits[n], users).float() for n in names])
        rows, items = held
        keep = ~seen[rows, items]         # a held-out item also rated in train: not a target
        rows, items = rows[keep], items[keep]
        p = torch.zeros(len(names), dtype=torch.float32, requires_grad=True)
        opt = torch.optim.LBFGS([p], max_iter=100, line_search_fn="strong_wolfe")

        def nll() -> torch.Tensor:
            s = torch.einsum("m,mui->ui", F.softplus(p) * len(names), z)
            s = s.masked_fill(seen, -torch.inf)
            return -(s[rows, items] - torch.logsumexp(s, 1)[rows]).mean()

        def step() -> torch.Tensor:
            opt.zero_grad()
            out = nll()
            out.backward()
            return out

        opt.step(step)
        with torch.no_grad():
            w, got = F.softplus(p), -float(nll())
        self.ranking_mix = {n: float(c) for n, c in zip(names, w / w.sum())}
        return got

    def _z(self, name: str, logits: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        """``logits`` of ``users`` (one per row, or per pair) as z-scores."""
        k = self._pos[name]
        if self.standardise == "catalogue":
            return (logits - self.logit_mean[k]) / self.logit_std[k]
        mean, std = self.user_mean[users, k], self.user_std[users, k]
        if logits.dim() == 2:
            mean, std = mean[:, None], std[:, None]
        return (logits - mean) / std

    @staticmethod
    def weighted(mix: dict[str, float]) -> dict[str, float]:
        """The members a mix gives a weight other than 0: the fitted weights often set some
        to 0 (NNLS), and such a member adds nothing, so it is not run for that output (all
        0: the whole mix, so the output stays a tensor of zeros)."""
        return {n: w for n, w in mix.items() if w != 0} or dict(mix)

    def combine_ratings(self, ratings: dict[str, torch.Tensor]) -> torch.Tensor:
        mixed = sum(w * ratings[n] for n, w in self.weighted(self.rating_mix).items())
        return mixed + self.rating_offset if self.rating_offset else mixed

    def combine_scores(self, logits: dict[str, torch.Tensor], users: torch.Tensor) -> torch.Tensor:
        """The ranking mix of the members' ``logits`` of ``users`` (rows [U, items] or pairs
        [B])."""
        return sum(w * self._z(n, logits[n], users)
                   for n, w in self.weighted(self.ranking_mix).items())

    def forward(self, user, item) -> Output:
        outs = {n: m(user, item) for n, m in self.members.items()}
        return Output(self.combine_ratings({n: o.rating for n, o in outs.items()}),
                      self.combine_scores({n: o.logit for n, o in outs.items()}, user),
                      torch.cat([o.hidden for o in outs.values()], 1))

    def rated(self, user, item):
        outs = {n: m.rated(user, item) for n, m in self.members.items()}
        return (self.combine_ratings({n: r for n, (r, _) in outs.items()}),
                torch.cat([h for _, h in outs.values()], 1))

    def predict(self, user, item):
        return self.combine_ratings({n: self.members[n].predict(user, item)
                                     for n in self.weighted(self.rating_mix)})

    def score_all(self, users, items=None):
        return self.combine_scores({n: self.members[n].score_all(users, items)
                                    for n in self.weighted(self.ranking_mix)}, users)

    def n_params(self) -> int:
        """Parameters of the members some output runs: a member weighted 0 in both mixes
        (NNLS often zeroes one) is not needed to predict, so it does not make the teacher
        look larger than it is (and its students smaller by comparison)."""
        used = set(self.weighted(self.rating_mix)) | set(self.weighted(self.ranking_mix))
        return sum(self.members[n].n_params() for n in used)

    def structure(self) -> list[Group]:
        return [g.prefixed(f"members.{name}.") for name, m in self.members.items()
                for g in m.structure()]


def _renorm(w: dict[str, float], what: str) -> dict[str, float]:
    total = sum(w.values())
    if not w or total <= 0:
        raise PakdError(f"no member feeds the {what} output with a positive weight; give one "
                        f"member the task {what} or balance")
    return {n: v / total for n, v in w.items()}
