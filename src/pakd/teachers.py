"""Teacher stages: train the members, evaluate them, build the ensemble teacher.

Artefacts in RUN/teachers/: ``<name>.safetensors`` + ``<name>.json`` per member (weights,
architecture, training log, test metrics), ``<name>.state.pt`` (resumable training state),
``<name>.scores.safetensors`` (the member's full users x items ranking scores, cached
because scoring the catalogue with xDeepFM or AutoInt is the most expensive step of a run),
``ensemble.json``; RUN/teachers.json and RUN/teachers.md summarise all of it.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save as st_save

from . import metrics as M
from .config import TEACHERS, FitConfig, RunConfig
from .data.encoding import Encoded
from .atomic import atomic_write_bytes, atomic_write_text
from .errors import PakdError
from .evaluate import evaluate, fit_platt, ranking_metrics, score_matrix
from .models import build, load, save
from .models.base import RecModel
from .models.ensemble import Ensemble, load_ensemble_dir
from .report import markdown_table
from .runs import log, progress, seed_everything
from .train import fit

ARCH_KEYS = {
    "svd": ("factors", "rank_factors", "init_std"),
    "xdeepfm": ("embed_dim", "cin_layers", "dnn", "dropout"),
    "autoint": ("embed_dim", "layers", "heads", "head_dim", "dnn", "dropout"),
}
METRIC_KEYS = ("rmse", "mae", "auc", "logloss", "recall@10", "ndcg@10")


def member_config(cfg: RunConfig, name: str) -> FitConfig:
    return getattr(cfg, name)


def member_arch(cfg: RunConfig, name: str) -> dict:
    c = member_config(cfg, name)
    return {k: getattr(c, k) for k in ARCH_KEYS[name]}


def teacher_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "teachers"


# ----------------------------------------------------------------------------- training

def train_members(cfg: RunConfig, run_dir: Path, enc: Encoded) -> dict[str, dict]:
    """Train every model in ``cfg.train.models``; returns their saved metadata."""
    tdir = teacher_dir(run_dir)
    tdir.mkdir(parents=True, exist_ok=True)
    mean = float(enc.parts["train"].rating.mean())
    out = {}
    for name in cfg.train.models:
        mcfg = member_config(cfg, name)
        # seeded by name, so a member trains the same alone or after the others
        seed_everything(cfg.seed * 1000 + TEACHERS.index(name))
        model = build(name, enc.schema, member_arch(cfg, name), tables=enc.tables, rating_mean=mean)
        log.info("training %s (%s parameters)", name, f"{model.n_params():,}")
        t0 = time.perf_counter()
        res = fit(model, enc, mcfg, seed=cfg.seed, name=name, ckpt=tdir / name,
                  resume=cfg.train.resume, quiet=cfg.quiet)
        wall = time.perf_counter() - t0
        meta = {"fit": {"train_seconds": res.train_seconds, "fit_seconds": wall,
                        "epoch_seconds": res.epoch_seconds, "best_epoch": res.best_epoch,
                        "best_epochs": res.best_epochs,
                        "epochs_run": res.epochs_run, "best_valid_loss": res.best_valid,
                        "threads": torch.get_num_threads(), "history": res.history},
                "train_config": mcfg.model_dump()}
        save(model, tdir / name, meta=meta)
        stale = tdir / f"{name}.scores.safetensors"
        if stale.exists():
            stale.unlink()
        m = evaluate_member(cfg, run_dir, name, model, enc)
        meta["test"] = m
        save(model, tdir / name, meta=meta)
        log.info("%s: test RMSE %.4f, AUC %.4f, NDCG@10 %.4f, Recall@10 %.4f (%.0fs training)",
                 name, m["rmse"], m["auc"], m["ndcg@10"], m["recall@10"], res.train_seconds)
        out[name] = meta
    return out


def load_member(run_dir: Path, name: str) -> tuple[RecModel, dict]:
    stem = teacher_dir(run_dir) / name
    if not stem.with_suffix(".safetensors").is_file():
        raise PakdError(f"teacher {name} not found in {teacher_dir(run_dir)}; "
                        f"run `pakd train --run {run_dir} --models {name}` first")
    return load(stem)


# ----------------------------------------------------------------------------- scores

def _fingerprint(run_dir: Path, name: str) -> str:
    return hashlib.md5((teacher_dir(run_dir) / f"{name}.safetensors").read_bytes()).hexdigest()


def member_scores(cfg: RunConfig, run_dir: Path, name: str, model: RecModel,
                  enc: Encoded) -> torch.Tensor | None:
    """The member's users x items scores, from the cache when its weights are unchanged.
    None when the matrix is larger than ``ensemble.cache_limit`` (then callers stream)."""
    if enc.n_users * enc.n_items > cfg.ensemble.cache_limit:
        return None
    path = teacher_dir(run_dir) / f"{name}.scores.safetensors"
    fp = _fingerprint(run_dir, name)
    if path.is_file():
        from safetensors import safe_open
        with safe_open(str(path), "pt") as f:
            if (f.metadata() or {}).get("weights_md5") == fp:
                return f.get_tensor("scores")
    t0 = time.perf_counter()
    with progress(total=enc.n_users, desc=f"score catalogue ({name})", quiet=cfg.quiet,
                  unit="user") as bar, torch.inference_mode():
        s = score_matrix(model, enc.n_users, progress=bar)
    log.info("%s: scored %d users x %d items in %.1fs", name, enc.n_users, enc.n_items,
             time.perf_counter() - t0)
    atomic_write_bytes(path, st_save({"scores": s.contiguous()}, metadata={"weights_md5": fp}))
    return s


def evaluate_member(cfg: RunConfig, run_dir: Path, name: str, model: RecModel,
                    enc: Encoded, part: str = "test") -> dict:
    scores = member_scores(cfg, run_dir, name, model, enc)
    return evaluate(model, enc, cfg.eval, part, scores=scores, quiet=cfg.quiet)


# ----------------------------------------------------------------------------- ensemble

def _weights(cfg: RunConfig) -> dict[str, float] | None:
    algos, tasks = cfg.ensemble.algorithms, cfg.ensemble.tasks
    if len(tasks) != len(algos):
        raise PakdError(f"--tasks has {len(tasks)} entries for {len(algos)} algorithms")
    if cfg.ensemble.weights == "auto":
        return None
    w = cfg.ensemble.weights
    if len(w) != len(algos) or min(w) < 0:
        raise PakdError(f"--weights needs {len(algos)} non-negative numbers (or auto), got {w}")
    return dict(zip(algos, map(float, w)))


def _valid_ratings(model: RecModel, enc: Encoded) -> torch.Tensor:
    from .evaluate import predict_ratings
    va = enc.parts["valid"]
    return predict_ratings(model, va.user, va.item)


def fit_auto_weights(ens: Ensemble, enc: Encoded, cfg: RunConfig,
                     scores: dict[str, torch.Tensor | None]) -> None:
    """Rating: non-negative least squares of the valid ratings on the members' predictions.
    Ranking: the convex weights (grid step 0.1) with the best validation NDCG@10."""
    from itertools import product

    from scipy.optimize import nnls
    rmembers = list(ens.rating_weights)
    X = torch.stack([_valid_ratings(ens.members[n], enc) for n in rmembers], 1).double().numpy()
    y = enc.parts["valid"].rating.double().numpy()
    w, _ = nnls(X, y)
    ens.rating_weights = {n: float(v) for n, v in zip(rmembers, w)}
    kmembers = list(ens.ranking_weights)
    if len(kmembers) == 1:
        return
    ecfg = cfg.eval.model_copy(update={"ks": [10]})
    z = {n: ens._z(n, scores[n] if scores.get(n) is not None else
                   score_matrix(ens.members[n], enc.n_users)) for n in kmembers}
    best, best_w = -1.0, None
    grid = [c for c in product(range(11), repeat=len(kmembers)) if sum(c) == 10]
    for combo in progress(grid, desc="fit ranking weights", quiet=cfg.quiet):
        s = sum(c / 10 * z[n] for c, n in zip(combo, kmembers))
        ndcg = ranking_metrics(None, enc, ecfg, "valid", scores=s)["ndcg@10"]
        if ndcg > best:
            best, best_w = ndcg, combo
    ens.ranking_weights = {n: c / 10 for c, n in zip(best_w, kmembers)}
    log.info("auto weights: rating %s, ranking %s (valid NDCG@10 %.4f)",
             ens.rating_weights, ens.ranking_weights, best)


def build_ensemble(cfg: RunConfig, run_dir: Path, enc: Encoded):
    algos = cfg.ensemble.algorithms
    members, metas = {}, {}
    for name in algos:
        members[name], metas[name] = load_member(run_dir, name)
    weights = _weights(cfg)
    tasks = dict(zip(algos, cfg.ensemble.tasks))
    ens = Ensemble(members, weights or {n: 1.0 for n in algos}, tasks)
    scores = {n: member_scores(cfg, run_dir, n, m, enc) for n, m in members.items()
              if n in ens.ranking_weights}
    ens.calibrate(enc.n_users, cfg.ensemble.calibration_users, cfg.seed, scores=scores)
    if weights is None:
        fit_auto_weights(ens, enc, cfg, scores)
    return ens, metas, scores


def save_ensemble(ens: Ensemble, run_dir: Path) -> None:
    atomic_write_text(teacher_dir(run_dir) / "ensemble.json",
                      json.dumps({"kind": "ensemble", **ens.arch()}, indent=2) + "\n")


def load_ensemble(run_dir: Path) -> Ensemble:
    return load_ensemble_dir(teacher_dir(run_dir), lambda n: load_member(run_dir, n)[0])


def ensemble_scores(ens: Ensemble, scores: dict[str, torch.Tensor | None]) -> torch.Tensor | None:
    if any(scores.get(n) is None for n in ens.ranking_weights):
        return None
    return ens.combine_scores({n: scores[n] for n in ens.ranking_weights})


def baselines(enc: Encoded, cfg: RunConfig) -> dict:
    """Global mean (rating) and MostPop (ranking by train popularity) on the test part."""
    scale = (enc.schema.rating_min, enc.schema.rating_max)
    tr, te, va = enc.parts["train"], enc.parts["test"], enc.parts["valid"]
    mu = float(tr.rating.mean())
    gm = {"rmse": M.rmse(np.full(len(te), mu), te.rating.numpy(), scale),
          "mae": M.mae(np.full(len(te), mu), te.rating.numpy(), scale),
          "auc": 0.5, "recall@10": None, "ndcg@10": None, "params": 1}
    keep, y = M.binary_labels(te.rating.numpy(), cfg.eval.positive_above, cfg.eval.negative_below)
    base_rate = float(y.mean()) if len(y) else float("nan")
    gm["logloss"] = M.logloss(np.full(len(y), base_rate), y) if len(y) else None
    pop = torch.bincount(tr.item, minlength=enc.n_items).float()
    mp = ranking_metrics(None, enc, cfg.eval, "test", scores=pop.expand(enc.n_users, -1))
    mostpop = {"rmse": None, "mae": None, "auc": None, "logloss": None, **mp,
               "params": enc.n_items}
    return {"global_mean": gm, "mostpop": mostpop}


def stage_ensemble(cfg: RunConfig, run_dir: Path, enc: Encoded) -> dict:
    """Build and evaluate the ensemble; write teachers.json / teachers.md."""
    ens, metas, scores = build_ensemble(cfg, run_dir, enc)
    save_ensemble(ens, run_dir)
    t0 = time.perf_counter()
    s = ensemble_scores(ens, scores)
    em = evaluate(ens, enc, cfg.eval, "test", scores=s, quiet=cfg.quiet)
    em.update(params=ens.n_params(),
              train_seconds=sum(metas[n]["fit"]["train_seconds"] for n in ens.members),
              weights=ens.weights, tasks=ens.tasks, rating_weights=ens.rating_weights,
              ranking_weights=ens.ranking_weights,
              standardisation={n: [float(ens.logit_mean[k]), float(ens.logit_std[k])]
                               for k, n in enumerate(ens.members)},
              eval_seconds=time.perf_counter() - t0)
    members = {}
    for n, meta in metas.items():
        m = dict(meta.get("test") or evaluate_member(cfg, run_dir, n, ens.members[n], enc))
        m.update(params=meta["params"], train_seconds=meta["fit"]["train_seconds"],
                 epochs_run=meta["fit"]["epochs_run"], best_epoch=meta["fit"]["best_epoch"],
                 epoch_seconds=meta["fit"]["epoch_seconds"], arch=meta["arch"])
        members[n] = m
    out = {"dataset": cfg.data.dataset, "split": _split_summary(run_dir),
           "threads": torch.get_num_threads(), "members": members, "ensemble": em,
           "baselines": baselines(enc, cfg)}
    from .pipeline import write_json
    write_json(Path(run_dir) / "teachers.json", out)
    atomic_write_text(Path(run_dir) / "teachers.md", teachers_markdown(out))
    log.info("ensemble: test RMSE %.4f, AUC %.4f, NDCG@10 %.4f, Recall@10 %.4f",
             em["rmse"], em["auc"], em["ndcg@10"], em["recall@10"])
    return out


def _split_summary(run_dir: Path) -> dict:
    p = Path(run_dir) / "split.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def teachers_markdown(res: dict) -> str:
    rows = []
    for n, m in res["members"].items():
        rows.append({"model": n, **m})
    e = res["ensemble"]
    rows.append({"model": "ensemble", **e})
    for n, m in res["baselines"].items():
        rows.append({"model": n, **m})
    cols = [("model", "model"), ("rmse", "RMSE"), ("mae", "MAE"), ("auc", "AUC"),
            ("logloss", "LogLoss"), ("recall@10", "Recall@10"), ("ndcg@10", "NDCG@10"),
            ("params", "params"), ("train_seconds", "train s")]
    w = ", ".join(f"{n} {e['tasks'][n]} {e['weights'][n]:g}" for n in e["tasks"])
    return (f"# Teachers on {res['dataset']}\n\nTest split, {res['threads']} torch threads. "
            f"Ensemble members (task, weight): {w}.\nRating weights used: "
            f"{_fmt_w(e['rating_weights'])}; ranking weights used: {_fmt_w(e['ranking_weights'])}"
            f" (ranking logits standardised per member).\n\n"
            + markdown_table(rows, cols) + "\n")


def _fmt_w(w: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in w.items())
