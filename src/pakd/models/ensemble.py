"""The ensemble teacher: members combined per output, itself a `RecModel`.

A member's task decides what it feeds: ``rating`` -> the rating output, ``ranking`` -> the
ranking output, ``balance`` -> both. ``weights`` are the members' weights as given; the
mix of each output (``rating_mix``, ``ranking_mix``) renormalises them over the members
that feed it (weights fitted with ``auto`` are used as fitted). Ranking logits of different models live on
different scales (an MF dot product vs a BCE-trained network), so before they are mixed
each member's logit is standardised with the mean and standard deviation of its scores
over the whole catalogue for a sample of users (`calibrate`) - a convex mix of z-scores.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import PakdError
from .base import Group, Output, RecModel

TASKS = ("rating", "ranking", "balance")


class Ensemble(RecModel):
    kind = "ensemble"

    def __init__(self, members: dict[str, RecModel], weights: dict[str, float],
                 tasks: dict[str, str], rating_mix: dict[str, float] | None = None,
                 ranking_mix: dict[str, float] | None = None):
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
        self.register_buffer("logit_mean", torch.zeros(len(members)))
        self.register_buffer("logit_std", torch.ones(len(members)))
        self._pos = {n: k for k, n in enumerate(members)}

    def arch(self) -> dict:
        return {"members": list(self.members), "weights": self.weights, "tasks": self.tasks,
                "rating_mix": self.rating_mix, "ranking_mix": self.ranking_mix,
                "logit_mean": self.logit_mean.tolist(), "logit_std": self.logit_std.tolist()}

    @classmethod
    def from_arch(cls, arch: dict, members: dict[str, RecModel]) -> "Ensemble":
        """The ensemble an `arch()` describes, over already loaded members (ensembles saved
        before the mixes were renamed store them as rating_weights / ranking_weights)."""
        ens = cls(members, arch["weights"], arch["tasks"],
                  arch.get("rating_mix", arch.get("rating_weights")),
                  arch.get("ranking_mix", arch.get("ranking_weights")))
        ens.logit_mean.copy_(torch.tensor(arch["logit_mean"]))
        ens.logit_std.copy_(torch.tensor(arch["logit_std"]))
        return ens.eval()

    def frozen(self) -> "Ensemble":
        """The same ensemble over its members' exported forms: a member whose vectors are
        computed from the data (LightGCN, SASRec) is frozen to those vectors
        (`pakd.models.frozen`), the others are used as they are."""
        members = {n: m.frozen() if hasattr(m, "frozen") else m for n, m in self.members.items()}
        return Ensemble.from_arch(self.arch(), members)

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

    def fit_rating_mix(self, predictions: dict[str, torch.Tensor], ratings: torch.Tensor) -> None:
        """Rating weights in closed form: non-negative least squares of the (valid)
        ``ratings`` on the rating members' ``predictions`` of the same pairs."""
        from scipy.optimize import nnls
        names = list(self.rating_mix)
        X = torch.stack([predictions[n] for n in names], 1).double().numpy()
        w, _ = nnls(X, ratings.double().numpy())
        self.rating_mix = {n: float(v) for n, v in zip(names, w)}

    def fit_ranking_mix(self, logits: dict[str, torch.Tensor], valid_ndcg,
                        quiet: bool = True) -> float:
        """Ranking weights: the convex mix of the ranking members' standardised ``logits``
        (the same user rows each) whose ``valid_ndcg(scores)`` is best
        (`pakd.train.select.best_on_simplex`); returns that NDCG@10."""
        from ..train.select import best_on_simplex     # pakd.train imports the models
        names = list(self.ranking_mix)
        z = {n: self._z(n, logits[n]) for n in names}
        best_w, best = best_on_simplex(
            names, lambda w: valid_ndcg(sum(c * z[n] for c, n in zip(w, names) if c > 0)),
            quiet=quiet)
        self.ranking_mix = {n: float(c) for c, n in zip(best_w, names)}
        return best

    def _z(self, name: str, logits: torch.Tensor) -> torch.Tensor:
        k = self._pos[name]
        return (logits - self.logit_mean[k]) / self.logit_std[k]

    @staticmethod
    def weighted(mix: dict[str, float]) -> dict[str, float]:
        """The members a mix gives a weight other than 0: the fitted weights often set some
        to 0 (NNLS), and such a member adds nothing, so it is not run for that output (all
        0: the whole mix, so the output stays a tensor of zeros)."""
        return {n: w for n, w in mix.items() if w != 0} or dict(mix)

    def combine_ratings(self, ratings: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(w * ratings[n] for n, w in self.weighted(self.rating_mix).items())

    def combine_scores(self, logits: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(w * self._z(n, logits[n]) for n, w in self.weighted(self.ranking_mix).items())

    def forward(self, user, item) -> Output:
        outs = {n: m(user, item) for n, m in self.members.items()}
        return Output(self.combine_ratings({n: o.rating for n, o in outs.items()}),
                      self.combine_scores({n: o.logit for n, o in outs.items()}),
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
                                    for n in self.weighted(self.ranking_mix)})

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
