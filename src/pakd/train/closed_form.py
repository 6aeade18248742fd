"""The members fitted by closed-form solves (EASE, implicit ALS, the item neighbourhood):
each is fitted for every value of one setting and the value with the best valid figure is
kept (`pakd.train.select.best_on_grid`: the test part only reports)."""
from __future__ import annotations

import time

import torch

from ..config import RunConfig
from ..data.encoding import Encoded
from ..models import build
from ..models.base import RecModel


def _train_matrix(enc: Encoded):
    X = enc.seen(("train",)).astype("float64")
    X.data[:] = 1.0
    return X


def choose_on_valid(cfg: RunConfig, enc: Encoded, name: str, model: RecModel, grid: list,
                    fit_one, label: str, rating: bool = False,
                    setup_seconds: float = 0.0) -> dict:
    """Fit ``model`` for each value of ``grid`` (``fit_one(value)``) and keep the one with
    the best valid NDCG@10, or the lowest valid RMSE for a ``rating`` member; returns the
    member's metadata. ``setup_seconds``: the fitting done once before the grid, counted in
    the member's training time."""
    from ..evaluate import predict_ratings, ranking_metrics
    from ..metrics import rmse
    from .select import best_on_grid, note_edge
    va = enc.parts["valid"]
    figure = "rmse" if rating else "ndcg@10"

    def valid_figure(value) -> float:
        fit_one(value)
        if rating:
            return rmse(predict_ratings(model, va.user, va.item), va.rating,
                        (enc.schema.rating_min, enc.schema.rating_max))
        return ranking_metrics(model, enc, "valid", ks=[10], chunk=cfg.eval.chunk,
                               relevant_min_rating=cfg.eval.relevant_min_rating)["ndcg@10"]

    t0 = time.perf_counter()
    best = best_on_grid(grid, valid_figure, label=label, desc=f"{name} {label}s", name=name,
                        quiet=cfg.quiet, figure=figure, minimise=rating,
                        keep=lambda: {k: v.detach().clone()
                                      for k, v in model.state_dict().items()})
    model.load_state_dict(best.kept)
    setattr(model, label, best.value)
    edge = note_edge(name, label, best.value, grid)
    spent = time.perf_counter() - t0 + setup_seconds
    return {"fit": {"train_seconds": spent, "fit_seconds": spent, "epoch_seconds": 0.0,
                    "best_epoch": 0, "best_epochs": {}, "epochs_run": 0,
                    f"best_valid_{figure}": best.score, label: best.value, "at_edge": edge,
                    "threads": torch.get_num_threads(), "history": best.history},
            "chosen": {label: best.value}, "train_config": getattr(cfg, name).model_dump()}


def fit_ease(cfg: RunConfig, enc: Encoded, mean: float) -> tuple[RecModel, dict]:
    """EASE in closed form for each of ``ease.lambdas``."""
    X = _train_matrix(enc)                 # the catalogue was checked by check_settings
    model = build("ease", enc.schema, {"history": X.nnz}, rating_mean=mean)
    return model, choose_on_valid(cfg, enc, "ease", model, cfg.ease.lambdas,
                                  lambda lam: model.fit(X, lam), "lam")


def fit_als(cfg: RunConfig, enc: Encoded, mean: float) -> tuple[RecModel, dict]:
    """Implicit ALS for each of ``als.regs`` (seeded initialisation)."""
    X = _train_matrix(enc)
    a = cfg.als
    model = build("als", enc.schema, {"factors": a.factors, "alpha": a.alpha}, rating_mean=mean)
    return model, choose_on_valid(cfg, enc, "als", model, a.regs,
                                  lambda reg: model.fit(X, reg, a.iterations, seed=cfg.seed),
                                  "reg")


def fit_knn(cfg: RunConfig, enc: Encoded, mean: float,
            name: str = "knn") -> tuple[RecModel, dict]:
    """The item (or, ``name`` uknn, user) neighbourhood, or knn_interp: biases and
    similarities (and knn_interp's co-residual means) once, then each of the section's ``ks``
    neighbour counts (the count changes only the prediction)."""
    tr, c = enc.parts["train"], getattr(cfg, name)
    arch = {"history": len(tr.rating), "shrink": c.shrink, "reg_user": c.reg_user,
            "reg_item": c.reg_item}
    if name == "knn_interp":
        arch.update(beta=c.beta, ridge=c.ridge)
    model = build(name, enc.schema, arch, rating_mean=mean)
    t0 = time.perf_counter()
    model.fit(tr.user.numpy(), tr.item.numpy(), tr.rating.numpy())
    return model, choose_on_valid(cfg, enc, name, model, c.ks,
                                  lambda k: setattr(model, "k", int(k)), "k", rating=True,
                                  setup_seconds=time.perf_counter() - t0)


FITS = {"ease": fit_ease, "als": fit_als, "knn": fit_knn,
        "uknn": lambda cfg, enc, mean: fit_knn(cfg, enc, mean, "uknn"),
        "knn_interp": lambda cfg, enc, mean: fit_knn(cfg, enc, mean, "knn_interp")}


def fit_closed_form(name: str, cfg: RunConfig, enc: Encoded,
                    mean: float) -> tuple[RecModel, dict]:
    """(the fitted member ``name``, its metadata)."""
    return FITS[name](cfg, enc, mean)
