"""`pakd export`: a deployable model as ONNX graphs (top-K and rating), checked against
PyTorch on every user, optionally quantised to int8, with a metadata file beside them.

Export goes through PyTorch's own exporter (``torch.onnx.export(dynamo=True)``) on the
modules of `pakd.deploy.graphs`, so every model pakd trains exports: dot-product models as a
single matrix product, field-interaction models (xDeepFM, AutoInt) and the ensemble by
scoring each (user, item) pair of the catalogue inside the graph - correct, but as slow as
the model itself. int8 is onnxruntime's dynamic quantisation (weights int8, activations
quantised per call); its accuracy and speed are measured here, not assumed.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..errors import PakdError
from ..rundir import read_json, write_json
from ..runtime import log, progress
from .deployable import Deployable
from .graphs import (RATING_INPUTS, RATING_OUTPUTS, TOPK_INPUTS, TOPK_OUTPUTS, OnnxGraphs,
                     RatingGraph, TopKGraph, TorchGraphs)

PARITY_TOL = 1e-4      # max |score difference| ONNX vs PyTorch the export accepts
# scores closer than this are a tie whose order may differ: float32 sums taken in another
# order move a score by ~1e-6 (the ensemble's z-scored mix, measured), so items that close
# have no order either backend can be trusted on
TIE_TOL = 1e-5


def require_deploy_extra() -> None:
    """Stop with the install command when the ``deploy`` extra is missing."""
    import importlib.util
    # found, not imported: importing onnxscript alone costs seconds and ~100 MB that
    # `pakd serve` of a PyTorch model never needs
    missing = [m for m in ("onnx", "onnxruntime", "onnxscript", "fastapi", "uvicorn")
               if importlib.util.find_spec(m) is None]
    if missing:
        raise PakdError(f"{missing[0]} is not installed; `pip install 'pakd[deploy]'` (make run "
                        "and make test install it)")


def graph_files(out: Path, int8: bool = False) -> tuple[Path, Path]:
    tag = ".int8" if int8 else ""
    return out / f"topk{tag}.onnx", out / f"rating{tag}.onnx"


def open_onnx(out: str | Path, int8: bool = False, threads: int = 1) -> OnnxGraphs:
    out = Path(out)
    topk, rating = graph_files(out, int8)
    for p in (topk, rating):
        if not p.is_file():
            raise PakdError(f"{p} not found; run `pakd export --model MODEL --out {out}"
                            f"{' --int8' if int8 else ''}` first")
    return OnnxGraphs(topk, rating, threads=threads)


@contextlib.contextmanager
def _stderr_captured():
    """Send file descriptor 2 to a temp file for the block (the exporter prints graph dumps
    of data-dependent shapes, e.g. EASE's history lookup, straight to stderr); yields a
    function returning what was written."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield lambda: (tmp.seek(0), tmp.read().decode("utf-8", "replace"))[1]
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _export_module(module: torch.nn.Module, args: tuple, names: tuple, outputs: tuple,
                   dynamic: dict, path: Path) -> None:
    """torch.onnx.export to ``path`` (atomically: a temp file, then rename)."""
    big = sum(p.numel() for p in module.parameters()) * 4 > 1_500_000_000
    tmp = path.with_name(path.name + ".tmp")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()) as said, \
            _stderr_captured() as printed:
        warnings.simplefilter("ignore")
        # the exporter logs graph dumps and advice at WARNING through loggers of its own
        logging.disable(logging.WARNING)
        try:
            prog = torch.onnx.export(module, args, input_names=list(names),
                                     output_names=list(outputs), dynamic_shapes=dynamic,
                                     dynamo=True, verbose=False)
            prog.save(str(tmp), external_data=big)
        except Exception as e:   # the exporter's own errors name the operator it lacks
            raise PakdError(f"ONNX export of {path.name} failed: {type(e).__name__}: "
                            f"{str(e).splitlines()[0][:300]}") from None
        finally:
            logging.disable(logging.NOTSET)
        log.debug("exporter said: %s %s", said.getvalue()[-2000:], printed()[-2000:])
    _optimise(tmp, path, big)
    for f in (tmp, Path(str(tmp) + ".data")):
        f.unlink(missing_ok=True)


def _optimise(src: Path, dst: Path, big: bool) -> None:
    """onnxruntime's basic (portable, standard-operator) optimisations - above all constant
    folding, which turns the item side of a dot-product model (side-field pooling over the
    whole catalogue) into one stored matrix - written to ``dst`` via a temp file."""
    from .graphs import onnxruntime
    ort = onnxruntime()
    tmp = dst.with_name(dst.name + ".opt.tmp")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = str(tmp)
    opts.log_severity_level = 3
    if big:
        opts.add_session_config_entry(
            "session.optimized_model_external_initializers_file_name", dst.name + ".data")
    ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])
    tmp.replace(dst)


def export_graphs(dep: Deployable, out: Path, k: int) -> tuple[Path, Path]:
    """The fp32 top-K and rating graphs of ``dep`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    model = dep.model.eval()
    if hasattr(model, "frozen"):          # users built from histories: their vectors, once
        model = model.frozen()
    b = torch.export.Dim("batch", min=1)
    s = torch.export.Dim("seen", min=1)
    topk_path, rating_path = graph_files(out)
    users = torch.tensor([0, min(1, dep.model.schema.n_users - 1)])
    seen = torch.tensor([[0, -1], [min(1, dep.n_items - 1), -1]])
    with torch.no_grad():
        _export_module(TopKGraph(model, k), (users, seen), TOPK_INPUTS, TOPK_OUTPUTS,
                       {"user": {0: b}, "seen": {0: b, 1: s}}, topk_path)
        _export_module(RatingGraph(model), (users, users.clone() % dep.n_items), RATING_INPUTS,
                       RATING_OUTPUTS, {"user": {0: b}, "item": {0: b}}, rating_path)
    return topk_path, rating_path


def quantise(out: Path) -> tuple[Path, Path]:
    """int8 copies of both graphs (onnxruntime dynamic quantisation: int8 weights, inputs of
    each MatMul quantised per call), made from the constant-folded fp32 graphs so that the
    folded item matrix is what gets quantised."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from .graphs import onnxruntime
    onnxruntime()                       # telemetry off before quantisation opens sessions
    done = []
    for src, dst in zip(graph_files(out), graph_files(out, int8=True)):
        tmp = dst.with_name(dst.name + ".tmp")
        logging.disable(logging.WARNING)   # its advice to pre-process: the graph already is
        try:
            quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
        tmp.replace(dst)
        done.append(dst)
    return done[0], done[1]


def _user_batches(n_users: int, dep: Deployable, batch: int):
    for s in range(0, n_users, batch):
        users = np.arange(s, min(n_users, s + batch), dtype=np.int64)
        yield users, dep.seen_padded(users)


def run_encoding(dep: Deployable):
    """(the run's encoded split, its relevance threshold) - None without a run's split.
    Loaded once per export: parity and every backend's accuracy read it."""
    if dep.run is None or not dep.run.split_csv.is_file():
        return None
    from ..config import build_config, load_run_config
    from ..data import load_encoded
    cfg = build_config(base=load_run_config(dep.run.config))
    cfg.quiet = True
    return load_encoded(cfg, dep.run), cfg.eval.relevant_min_rating


def parity(dep: Deployable, ref: TorchGraphs, got: OnnxGraphs, run, *, batch: int,
           quiet: bool = True) -> dict:
    """ONNX against PyTorch over every user's top-K and every pair of the run's split (or
    a sample of pairs without a run): the largest score difference, and top-K lists that
    differ other than by the order of tied scores. ``run``: `run_encoding`'s answer."""
    n_users = dep.model.schema.n_users
    worst, same, ties_only, differ, bad_users, top10 = 0.0, 0, 0, 0, [], 0
    with progress(total=n_users, desc="parity top-K", quiet=quiet, unit="user") as bar:
        for users, seen in _user_batches(n_users, dep, batch):
            rs, ri = ref.top(users, seen)
            gs, gi = got.top(users, seen)
            finite = np.isfinite(rs)
            if (finite != np.isfinite(gs)).any():
                worst = float("inf")
            else:
                worst = max(worst, float(np.abs(rs[finite] - gs[finite]).max(initial=0.0)))
            for r in range(len(users)):
                top10 += bool(np.array_equal(ri[r][:10], gi[r][:10]))
                if np.array_equal(ri[r], gi[r]):
                    same += 1
                elif _ties_only(rs[r], gs[r], ri[r] != gi[r]):
                    ties_only += 1
                else:
                    differ += 1
                    bad_users.append(dep.user_ids[int(users[r])])
            bar.update(len(users))
    pu, pi = _rating_pairs(dep, run)
    rating_worst = 0.0
    for s in range(0, len(pu), 16384):
        a = ref.rate(pu[s:s + 16384], pi[s:s + 16384])
        b = got.rate(pu[s:s + 16384], pi[s:s + 16384])
        rating_worst = max(rating_worst, float(np.abs(a - b).max(initial=0.0)))
    return {"users": n_users, "k": ref.k, "max_abs_score_diff": worst,
            "topk_identical": same, "topk_differ_in_ties_only": ties_only,
            "topk_differ": differ, "users_differing": bad_users[:20],
            "top10_identical": top10, "tie_tolerance": TIE_TOL,
            "rating_pairs": int(len(pu)), "max_abs_rating_diff": rating_worst,
            "passed": bool(worst <= PARITY_TOL and rating_worst <= PARITY_TOL and differ == 0)}


def _ties_only(ref_scores: np.ndarray, got_scores: np.ndarray, moved: np.ndarray) -> bool:
    """Two top-K lists differ only by the order of tied items: the same scores rank by rank
    (within the parity tolerance), and every position where the items differ holds a score
    another position shares (within the tie tolerance)."""
    if not np.allclose(ref_scores, got_scores, atol=PARITY_TOL, rtol=0):
        return False
    d = ref_scores[:, None] - ref_scores[None, :]
    tied = (ref_scores[:, None] == ref_scores[None, :]) | (np.abs(d) <= TIE_TOL)
    return bool((tied.sum(1)[moved] > 1).all())


def _rating_pairs(dep: Deployable, run) -> tuple[np.ndarray, np.ndarray]:
    """Every (user, item) of the run's split, else 50 random items per user."""
    if run is not None:
        parts = run[0].parts.values()
        return (np.concatenate([p.user.numpy() for p in parts]).astype(np.int64),
                np.concatenate([p.item.numpy() for p in parts]).astype(np.int64))
    g = np.random.default_rng(0)
    n_users = dep.model.schema.n_users
    return (np.repeat(np.arange(n_users), 50).astype(np.int64),
            g.integers(0, dep.n_items, n_users * 50).astype(np.int64))


def accuracy_on_test(dep: Deployable, graphs, run, *, batch: int) -> dict | None:
    """Test RMSE and NDCG@10/Recall@10 of a graph pair, computed from its own outputs: the
    top-K lists it returns (seen items excluded by the graph) and its ratings of the test
    pairs. ``run``: `run_encoding`'s answer; None without the run's split."""
    if run is None:
        return None
    from .. import metrics as M
    from ..evaluate import relevant_matrix
    enc, min_rating = run
    rel = relevant_matrix(enc, "test", min_rating)
    ks = [k for k in (10, 20) if k <= graphs.k]

    def scores(users: torch.Tensor) -> torch.Tensor:
        u = users.numpy()
        _, idx = graphs.top(u, dep.seen_padded(u))
        out = torch.full((len(u), dep.n_items), -torch.inf)
        rank = torch.arange(idx.shape[1], 0, -1, dtype=torch.float32).expand(len(u), -1)
        out.scatter_(1, torch.from_numpy(idx), rank)
        return out

    out = {k: v for k, v in M.topk_metrics(scores, rel, None, ks=ks, chunk=batch).items()
           if k.startswith(("ndcg", "recall"))}
    pt = enc.parts["test"]
    pred = graphs.rate(pt.user.numpy(), pt.item.numpy())
    scale = (enc.schema.rating_min, enc.schema.rating_max)
    out["rmse"] = M.rmse(torch.from_numpy(pred), pt.rating, scale)
    out["mae"] = M.mae(torch.from_numpy(pred), pt.rating, scale)
    return out


def speed(dep: Deployable, graphs, *, seconds: float = 1.0, batch: int = 256) -> dict:
    """One-user top-K latency (p50/p99 ms, the serving case) and users per second in
    batches of ``batch``; random users, fixed seed."""
    g = np.random.default_rng(0)
    n_users = dep.model.schema.n_users
    lat = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(lat) < 20:
        u = g.integers(0, n_users, 1)
        seen = dep.seen_padded(u)
        t0 = time.perf_counter()
        graphs.top(u, seen)
        lat.append(time.perf_counter() - t0)
    users = g.integers(0, n_users, batch)
    seen = dep.seen_padded(users)
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or done == 0:
        graphs.top(users, seen)
        done += len(users)
    ms = np.array(lat) * 1e3
    return {"latency_ms_p50": float(np.percentile(ms, 50)),
            "latency_ms_p99": float(np.percentile(ms, 99)), "latency_reps": len(lat),
            "users_per_s": done / (time.perf_counter() - t0), "batch": batch}


def export(dep: Deployable, out: str | Path, *, k: int = 100, int8: bool = False,
           threads: int = 1, batch: int = 256, bench_seconds: float = 1.0,
           quiet: bool = True) -> dict:
    """Export, check parity, measure (test metrics and speed, fp32 and int8), and write
    ``out/metadata.json``; returns it. Parity failure raises after the metadata is written."""
    require_deploy_extra()
    if k < 1:
        raise PakdError(f"-k must be at least 1, got {k}")
    out = Path(out)
    torch.set_num_threads(max(1, int(threads)))
    if not dep.model.one_pass_score_all:     # every (user, item) pair goes through the model
        batch = max(1, min(batch, 32768 // max(1, dep.n_items)))
    t0 = time.perf_counter()
    export_graphs(dep, out, k)
    log.info("exported %s to %s (%.1fs)", dep.name, out, time.perf_counter() - t0)
    ref = TorchGraphs(dep.model, k)
    fp32 = open_onnx(out, threads=threads)
    run = run_encoding(dep)
    check = parity(dep, ref, fp32, run, batch=batch, quiet=quiet)
    variants = {"pytorch": ref, "onnx_fp32": fp32}
    if int8:
        quantise(out)
        variants["onnx_int8"] = open_onnx(out, int8=True, threads=threads)
    measured = {}
    for name, graphs in variants.items():
        measured[name] = {"metrics": accuracy_on_test(dep, graphs, run, batch=batch),
                          "speed": speed(dep, graphs, seconds=bench_seconds, batch=batch)}
        log.debug("%s: %s", name, measured[name])   # `pakd export` prints the summary
    files = {name: p.name for name, p in zip(("topk", "rating"), graph_files(out))}
    if int8:
        files.update({f"{name}_int8": p.name for name, p in
                      zip(("topk", "rating"), graph_files(out, int8=True))})
    meta = {
        "pakd_version": __version__, "model": dep.describe(), "k": ref.k,
        "files": files, "sizes_bytes": {n: (out / f).stat().st_size for n, f in files.items()},
        "inputs": {"topk": {"user": "int64 [batch] user index",
                            "seen": "int64 [batch, S] item indices to skip, -1 = padding"},
                   "rating": {"user": "int64 [batch] user index",
                              "item": "int64 [batch] item index"}},
        "outputs": {"topk": {"scores": f"float32 [batch, {ref.k}]",
                             "items": f"int64 [batch, {ref.k}] item indices, best first"},
                    "rating": {"rating": "float32 [batch]"}},
        "index": {"user_ids": dep.user_ids, "item_ids": dep.item_ids, "titles": dep.titles},
        "parity": check, "measured": measured, "threads": threads,
        "int8_method": "onnxruntime quantize_dynamic, QInt8 weights" if int8 else None,
    }
    write_json(out / "metadata.json", meta)
    if not check["passed"]:
        raise PakdError(f"ONNX parity failed (max |score diff| {check['max_abs_score_diff']:.2e},"
                        f" rating {check['max_abs_rating_diff']:.2e}, {check['topk_differ']} "
                        f"top-K lists differ, e.g. users {check['users_differing'][:5]}); "
                        f"see {out / 'metadata.json'}")
    return meta


def read_metadata(out: str | Path) -> dict:
    p = Path(out) / "metadata.json"
    if not p.is_file():
        raise PakdError(f"{p} not found: {out} is not a `pakd export` directory")
    return read_json(p)
