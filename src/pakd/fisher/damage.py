"""Measured damage: what removing units really costs, to check the Fisher's predictions.

The losses are those the Fisher is the curvature of (`pakd.fisher.estimate`): a Gaussian
NLL on rated pairs (variance ``sigma2``, the model's own mean squared error), a Bernoulli
BCE on observed pairs against sampled negatives, and their sum (the ensemble objective,
measured on the ensemble's outputs with the member replaced by its damaged copy).

- `check_units` removes sampled units one at a time and records the measured loss increase
  beside every prediction (each Fisher kind, Taylor and magnitude) on the valid part, the
  test part and the train sample the Fisher was estimated from. The Taylor predictor's
  gradient is the valid loss's, so its agreement on valid is in-sample: the headline
  figures are measured on the test part, with a paired bootstrap over units for "this
  predictor ranks the damage better than magnitude";
- `check_plan` applies a whole plan physically and compares predicted with measured losses,
  RMSE and NDCG@10.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import metrics as M
from ..data.encoding import Encoded
from ..evaluate import exclusion_parts, predict_ratings, relevant_matrix
from ..models.base import FieldModel, RecModel
from ..prune import MaskFisher, find_group, mask_units, prune_plan
from ..runtime import progress
from ..train import NegativeSampler
from . import analysis as A


@dataclass
class Examples:
    """Observed pairs (with their rating) and as many sampled negatives."""
    user: torch.Tensor
    item: torch.Tensor
    y_rating: torch.Tensor
    y_rank: torch.Tensor
    has_rating: torch.Tensor

    def __len__(self) -> int:
        return len(self.user)

    @classmethod
    def of_part(cls, enc: Encoded, part: str, n: int, seed: int) -> "Examples":
        """Ratings of ``part`` (all, or a seeded sample of n) each with one sampled negative."""
        pt = enc.parts[part]
        g = torch.Generator().manual_seed(seed)
        idx = torch.arange(len(pt)) if n <= 0 or n >= len(pt) else torch.sort(
            torch.randperm(len(pt), generator=g)[:n]).values
        u, i, r = pt.user[idx], pt.item[idx], pt.rating[idx]
        neg = NegativeSampler(enc).sample(u, 1, g)[:, 0]
        k = len(u)
        return cls(torch.cat([u, u]), torch.cat([i, neg]), torch.cat([r, torch.zeros(k)]),
                   torch.cat([torch.ones(k), torch.zeros(k)]),
                   torch.cat([torch.ones(k, dtype=torch.bool), torch.zeros(k, dtype=torch.bool)]))


@torch.no_grad()
def outputs(model: RecModel, ex: Examples, batch: int = 1024):
    """(rating, logit) of every example, float64. Small batches run fastest on CPU."""
    model.eval()
    rs, ls = [], []
    for s in range(0, len(ex), batch):
        o = model(ex.user[s:s + batch], ex.item[s:s + batch])
        rs.append(o.rating.double())
        ls.append(o.logit.double())
    return torch.cat(rs), torch.cat(ls)


def loss_sums(rating, logit, ex: Examples, sigma2: float) -> dict[str, torch.Tensor]:
    """Summed losses of the three objectives over ``ex`` (a batch of it): the Gaussian NLL
    of the rated pairs, the BCE of all pairs, and both (same definitions as the Fisher)."""
    hr = ex.has_rating
    nll_r = 0.5 * (rating - ex.y_rating.to(rating.dtype)) ** 2 / sigma2
    bce = F.binary_cross_entropy_with_logits(logit, ex.y_rank.to(logit.dtype), reduction="none")
    return {"rating": nll_r[hr].sum(), "ranking": bce.sum(), "ensemble": (nll_r * hr + bce).sum()}


def _counts(ex: Examples) -> dict[str, int]:
    n, rated = len(ex), int(ex.has_rating.sum())
    return {"rating": max(1, rated), "ranking": max(1, n), "ensemble": max(1, n)}


def losses(rating, logit, ex: Examples, sigma2: float) -> dict:
    """Per-example mean losses of the three objectives."""
    cnt = _counts(ex)
    return {k: float(v) / cnt[k] for k, v in loss_sums(rating, logit, ex, sigma2).items()}


def loss_gradient(model: RecModel, ex: Examples, sigma2: float, objective: str, *,
                  params: dict[str, torch.Tensor] | None = None,
                  batch: int = 1024) -> dict[str, torch.Tensor]:
    """Gradient of an objective's per-example mean loss on ``ex`` (float64), with respect to
    ``params`` (default: the model's own). ``model`` may be the ensemble and ``params`` one
    member's parameters, for the ensemble objective."""
    params = dict(model.named_parameters()) if params is None else params
    names = list(params)
    acc = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in params.items()}
    norm = _counts(ex)[objective]
    model.eval()
    for s in range(0, len(ex), batch):
        sl = slice(s, s + batch)
        part = Examples(ex.user[sl], ex.item[sl], ex.y_rating[sl], ex.y_rank[sl],
                        ex.has_rating[sl])
        out = model(part.user, part.item)
        total = loss_sums(out.rating, out.logit, part, sigma2)[objective] / norm
        grads = torch.autograd.grad(total, [params[n] for n in names], allow_unused=True)
        for n, g in zip(names, grads):
            if g is not None:
                acc[n] += g.double()
    return acc


def mask_taylor(model: RecModel, groups, ex: Examples, sigma2: float, objective: str, *,
                through: RecModel | None = None, batch: int = 1024) -> dict[str, torch.Tensor]:
    """{group: predicted loss change per unit}: the second-order Taylor expansion of an
    objective's per-example mean loss on ``ex`` in a mask m on the unit's activations
    (``Group.acts``), taken in s = m^degree, in which the unit's contribution is linear:
    removing the unit (s 1 -> 0) changes the loss by about -g/k + F/(2 k^2), with g the mean
    mask gradient, F its mean square (the mask's empirical Fisher) and k the degree.

    Why the mask and not the parameters: a unit's parameters enter multiplicatively (a
    neuron's incoming and outgoing weights; an attention head's query, key, value and
    output), so the straight path theta -> 0 bends the output, and a Fisher, which has no
    term for that bend, misreads it (on AutoInt's heads the parameter-space estimate had the
    wrong sign). Groups without acts are left out. The mask gradients are
    `pakd.prune.MaskFisher`'s, one example per scored pair. ``through``: the model whose outputs the
    objective reads (the ensemble, for the ensemble objective), ``model`` inside it."""
    groups = [g for g in groups if g.acts]
    outer = through if through is not None else model
    observer = MaskFisher(model=model)        # hooks on every group's activations
    outer.eval()
    try:
        for s in range(0, len(ex), batch):
            sl = slice(s, s + batch)
            part = Examples(ex.user[sl], ex.item[sl], ex.y_rating[sl], ex.y_rank[sl],
                            ex.has_rating[sl])
            out = outer(part.user, part.item)
            loss_sums(out.rating.double(), out.logit.double(), part, sigma2)[objective].backward()
            observer.record([torch.arange(len(part))], len(part))
    finally:
        observer.detach()
        outer.zero_grad(set_to_none=True)
    n, g_sum, f_sum = _counts(ex)[objective], observer.gradient_sums, observer.sums
    return {g.name: -g_sum[g.name] / n / g.degree + f_sum[g.name] / n / (2 * g.degree ** 2)
            for g in groups}


def sigma2_of(model: RecModel, ex: Examples) -> float:
    """The Gaussian variance of the rating objective: the model's mean squared error."""
    r, _ = outputs(model, ex)
    hr = ex.has_rating
    return float(((r[hr] - ex.y_rating[hr].double()) ** 2).mean())


@torch.no_grad()
def _branches(model: FieldModel, ex: Examples, batch: int = 1024):
    """(first-order terms, embeddings, branch features) of every example."""
    model.eval()
    lins, es, feats = [], [], []
    for s in range(0, len(ex), batch):
        u, i = ex.user[s:s + batch], ex.item[s:s + batch]
        e = model.embedding(u, i)
        lins.append(model.linear(u, i).sum(1))
        es.append(e)
        feats.append(model.branches(e))
    return torch.cat(lins), torch.cat(es), {k: torch.cat([f[k] for f in feats]) for k in feats[0]}


class LossProbe:
    """The losses of one member on fixed example sets - and, given the ensemble, of the
    ensemble with that member swapped for a damaged copy (the other members' outputs are
    computed once). Given the intact member (``reference``, a field model), a copy damaged
    only in its interaction part or only in its DNN reuses the intact other branch."""

    def __init__(self, name: str, parts: dict[str, Examples], sigma2: dict, ensemble=None,
                 reference: RecModel | None = None):
        self.name, self.parts, self.sigma2, self.ens = name, parts, sigma2, ensemble
        self.others = {}
        if ensemble is not None:
            self.others = {p: {n: outputs(m, e) for n, m in ensemble.members.items() if n != name}
                           for p, e in parts.items()}
        self.ref, self.cache = None, {}
        if isinstance(reference, FieldModel):
            self.ref = {n: p.detach() for n, p in reference.named_parameters()}
            self.cache = {p: _branches(reference, e) for p, e in parts.items()}

    @torch.no_grad()
    def _outputs(self, model: RecModel, part: str):
        e = self.parts[part]
        touched = None
        if self.ref is not None and isinstance(model, FieldModel):
            changed = {n for n, p in model.named_parameters() if not torch.equal(p, self.ref[n])}
            touched = model.branches_touched(changed)
        if touched is None:
            return outputs(model, e)
        model.eval()
        lin, emb, feats = self.cache[part]
        rs, ls = [], []
        for s in range(0, len(e), 1024):
            sl = slice(s, s + 1024)
            f = {k: v[sl] for k, v in feats.items()}       # (keeps the branches' order)
            if "cross" in touched:
                f["cross"] = model.cross(emb[sl])
            if "dnn" in touched:
                f["dnn"] = model.dnn(emb[sl].flatten(1))
            o = model.head_output(f, lin[sl])
            rs.append(o.rating.double())
            ls.append(o.logit.double())
        return torch.cat(rs), torch.cat(ls)

    def __call__(self, model: RecModel, part: str) -> dict:
        e = self.parts[part]
        r, lg = self._outputs(model, part)
        out = losses(r, lg, e, self.sigma2[self.name])
        if self.ens is not None:
            rr = {n: o[0] for n, o in self.others[part].items()}
            ll = {n: o[1] for n, o in self.others[part].items()}
            rr[self.name], ll[self.name] = r, lg
            er = self.ens.combine_ratings({n: rr[n] for n in self.ens.rating_mix})
            el = self.ens.combine_scores({n: ll[n] for n in self.ens.ranking_mix}, e.user)
            out["ensemble"] = losses(er, el, e, self.sigma2["ensemble"])["ensemble"]
        return out


def _measure_units(model: RecModel, probe: LossProbe, tested: list[dict], tables: dict,
                   magnitude: dict, quiet: bool) -> tuple[dict, list[dict]]:
    """(the loss of every part and objective before, one point per tested unit): each
    unit removed alone, every criterion's prediction beside the measured change."""
    parts = list(probe.parts)
    base = {p: probe(model, p) for p in parts}
    points = []
    for u in progress(tested, desc=f"validate {probe.name}", quiet=quiet, unit="unit"):
        keep = torch.ones(find_group(model, u["group"]).units, dtype=torch.bool)
        keep[u["unit"]] = False
        masked = mask_units(copy.deepcopy(model), u["group"], keep)
        key = (u["group"], u["unit"])
        predicted = {f"{o}/{k}": t[key] for (o, k), t in tables.items()}
        predicted["magnitude"] = magnitude[key]
        point = {"group": u["group"], "kind": u["kind"], "unit": u["unit"], "predicted": predicted}
        for p in parts:
            got = probe(masked, p)
            point["measured" if p == "valid" else f"measured_{p}"] = {
                o: got[o] - base[p][o] for o in got}
        points.append(point)
    return base, points


def _correlations(points: list[dict], base: dict, focus: list[str], criteria: list[str],
                  no_path: dict, field: str, among: str | None = None) -> dict:
    """Per objective: each criterion's agreement with the change measured in ``field``
    over the units with a path (of group kind ``among`` only, when given: at least 3), and
    over all kinds each criterion's paired comparison with magnitude."""
    by_obj = {}
    for o in focus:
        if o not in base["valid"] or not points:
            continue
        pts = [p for p, gone in zip(points, no_path[o]) if not gone
               and (among is None or p["kind"] == among)]
        if among is not None and len(pts) < 3:
            continue
        meas = np.array([p[field][o] for p in pts])
        row = {"units": len(pts)}
        for k in criteria:
            key = "magnitude" if k == "magnitude" else f"{o}/{k}"
            if key not in points[0]["predicted"]:
                continue
            pred = np.array([p["predicted"][key] for p in pts])
            row.update(A.agreement(pred, meas, k))
        if among is None and "magnitude" in criteria:
            mag = np.array([p["predicted"]["magnitude"] for p in pts])
            row["beats"] = {}
            for k in criteria:
                key = f"{o}/{k}"
                if k != "magnitude" and key in points[0]["predicted"]:
                    pred = np.array([p["predicted"][key] for p in pts])
                    row["beats"][f"{k}_vs_magnitude"] = A.paired_spearman(pred, mag, meas)
        by_obj[o] = row
    return by_obj


def check_units(model: RecModel, probe: LossProbe, tested: list[dict], tables: dict,
                magnitude: dict, *, focus: list[str], kinds: list[str], primary: str,
                quiet: bool = True) -> dict:
    """Remove each of ``tested`` alone; measured loss increases beside the predictions.

    Measured on the valid part (what pruning costs a user; the Taylor predictor's gradient
    comes from it), on the test part (held out from every prediction) and on the train
    sample the Fisher was estimated from (what the Fisher claims to predict): where they
    disagree, removal changes generalisation (an overfit unit's removal lowers the held-out
    loss, which a Fisher estimate, never negative, cannot predict; the Taylor term can).
    Each criterion gets Spearman and Kendall correlations with the measured change, and a
    95% bootstrap interval (over units) on Spearman; each criterion other than magnitude
    gets ``beats["<c>_vs_magnitude"]`` (`pakd.fisher.analysis.paired_spearman`).

    Headline (``spearman_<c>``, ``beats``, ``by_kind``): the test part when it is measured
    (``headline_part``), else valid. ``in_sample`` keeps the valid part's figures, where
    the Taylor gradient was taken (``by_objective`` holds them for every objective)."""
    parts = list(probe.parts)
    base, points = _measure_units(model, probe, tested, tables, magnitude, quiet)
    criteria = [k for k in kinds if points and any(f"/{k}" in key for key in
                                                    points[0]["predicted"])] + ["magnitude"]
    # a unit with no path to the objective (SVD's rating factors under a ranking-only
    # objective): removing it changes nothing and every Fisher predicts exactly 0; such ties
    # would inflate a rank correlation, so they are counted apart, not correlated
    no_path = {o: [all(p[f][o] == 0 for f in p if f.startswith("measured"))
                   and all(v == 0 for k, v in p["predicted"].items() if k.startswith(f"{o}/"))
                   for p in points] for o in focus if o in base["valid"]}

    def correlations(field: str, among=None) -> dict:
        return _correlations(points, base, focus, criteria, no_path, field, among)

    by_obj = correlations("measured")
    head_part = "test" if "test" in parts else "valid"
    head_field = "measured_test" if head_part == "test" else "measured"
    head_all = correlations(head_field) if head_part == "test" else by_obj
    top, valid_top = head_all.get(primary, {}), by_obj.get(primary, {})
    kinds_seen = sorted({p["kind"] for p in points})
    out = {"objective": primary, "headline_part": head_part,
           **{f"spearman_{k}": top.get(f"spearman_{k}") for k in criteria},
           **{f"spearman_{k}_ci95": top.get(f"spearman_{k}_ci95") for k in criteria},
           "beats": top.get("beats", {}),
           "in_sample": {"part": "valid",
                         **{f"spearman_{k}": valid_top.get(f"spearman_{k}") for k in criteria},
                         "beats": valid_top.get("beats", {})},
           "groups_tested": len(points),
           "units_without_path": {o: int(sum(v)) for o, v in no_path.items()},
           "by_kind": {k: correlations(head_field, k).get(primary) for k in kinds_seen},
           "kinds_tested": kinds_seen,
           "share_lowering_valid_loss": (sum(p["measured"][primary] < 0 for p in points)
                                         / len(points) if points else None),
           "base_valid_loss": base["valid"], "by_objective": by_obj, "points": points}
    if "train" in parts:
        out["train_sample"] = {"base_loss": base["train"],
                               "by_objective": correlations("measured_train")}
    if head_part == "test":
        out["test_part"] = {"base_loss": base["test"], "by_objective": head_all}
    return out


def check_plan(model: RecModel, keep: dict[str, torch.Tensor], tables: dict, kind: str,
               enc: Encoded, vex: Examples, sigma2: float, *, users: torch.Tensor,
               relevant_min_rating: float | None, base_scores: torch.Tensor | None = None
               ) -> dict:
    """Apply the plan ``keep`` physically; predicted versus measured change in the valid
    losses, test RMSE and test NDCG@10 (on ``users``)."""
    removed = [(g, int(u)) for g, k in keep.items() for u in torch.nonzero(~k).flatten()]
    base_m = copy.deepcopy(model).float().eval()
    pruned = prune_plan(copy.deepcopy(base_m), keep).eval()
    out = {"params_after": pruned.n_params(),
           "params_removed": base_m.n_params() - pruned.n_params(),
           "removed_ratio": 1 - pruned.n_params() / base_m.n_params()}
    pred = {obj: sum(tables[(obj, kind)][key] for key in removed)
            for obj in ("rating", "ranking", "ensemble") if (obj, kind) in tables}
    meas0 = losses(*outputs(base_m, vex), vex, sigma2)
    meas1 = losses(*outputs(pruned, vex), vex, sigma2)
    out["predicted_loss_increase"] = pred
    out["measured_loss_increase"] = {k: meas1[k] - meas0[k] for k in ("rating", "ranking")}
    # RMSE: a Gaussian NLL increase dL means an MSE increase of 2 sigma^2 dL
    te = enc.parts["test"]
    scale = (enc.schema.rating_min, enc.schema.rating_max)
    rm0 = M.rmse(predict_ratings(base_m, te.user, te.item), te.rating, scale)
    rm1 = M.rmse(predict_ratings(pruned, te.user, te.item), te.rating, scale)
    out["rmse_before"], out["rmse_after"] = rm0, rm1
    if "rating" in pred:
        out["rmse_predicted"] = float(np.sqrt(rm0 ** 2 + 2 * sigma2 * pred["rating"]))
    rel = relevant_matrix(enc, "test", relevant_min_rating)
    exc = enc.seen(exclusion_parts("test"))
    nd = []
    for m, cached in ((base_m, base_scores), (pruned, None)):
        fn = (lambda u, c=cached: c[u]) if cached is not None else m.score_all
        with torch.inference_mode():
            nd.append(M.topk_metrics(fn, rel, exc, ks=[10], users=users.tolist(),
                                     chunk=16)["ndcg@10"])
    out["ndcg@10_before"], out["ndcg@10_after"] = nd
    out["ndcg_users"] = len(users)
    out["ndcg_note"] = ("the Fisher predicts loss, not NDCG: compare predicted_loss_increase"
                        "['ranking'] with the measured NDCG change")
    return out
