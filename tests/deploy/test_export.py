"""ONNX export: the graphs mean what PyTorch means, on every user, and the figures the
export reports are the run's."""
import json

import numpy as np
import pytest
import torch

from pakd.cli import main
from pakd.deploy.deployable import load_deployable
from pakd.deploy.graphs import TopKGraph, TorchGraphs
from pakd.deploy.onnx_export import export, open_onnx
from pakd.errors import PakdError
from model_zoo import randomised

pytest.importorskip("onnxruntime")


def test_topk_graph_skips_seen_items_and_pads_with_minus_one(tiny_enc):
    model = randomised("lightweight_model", tiny_enc).float()
    g = TopKGraph(model, k=5)
    users = torch.tensor([0, 3])
    full = model.score_all(users)
    seen = torch.tensor([[int(full[0].argmax()), -1, -1], [1, 2, int(full[1].argmax())]])
    scores, items = g(users, seen)
    for r in range(2):
        masked = full[r].clone()
        masked[seen[r][seen[r] >= 0]] = -torch.inf
        want = torch.topk(masked, 5)
        assert torch.equal(items[r], want.indices)
        assert torch.allclose(scores[r], want.values)
        assert not set(items[r].tolist()) & set(seen[r].tolist())
    assert TopKGraph(model, k=10 ** 6).k == tiny_enc.n_items


def test_student_export_matches_pytorch_and_the_run(pipeline_run, tmp_path, capsys):
    out = tmp_path / "onnx"
    rc = main(["export", "--model", str(pipeline_run / "models/saved/best_student_model"),
               "--out", str(out), "--int8", "-k", "20", "--export-seconds", "0.05", "-q"])
    assert rc == 0, capsys.readouterr().err
    meta = json.loads((out / "metadata.json").read_text())
    p = meta["parity"]
    assert p["passed"] and p["max_abs_score_diff"] <= 1e-4 and p["max_abs_rating_diff"] <= 1e-4
    assert p["users"] == 40 and p["topk_differ"] == 0 and p["rating_pairs"] > 500
    # the exported graph, scored like the pipeline scores, gives the run's own test figures
    run = json.loads((pipeline_run / "analysis_results/pakd_experiment.json").read_text())
    best = run["best_student"]
    got = meta["measured"]["onnx_fp32"]["metrics"]
    assert got["ndcg@10"] == pytest.approx(best["ndcg@10"], abs=1e-6)
    assert got["rmse"] == pytest.approx(best["rmse"], abs=1e-5)
    assert meta["measured"]["onnx_int8"]["metrics"]["rmse"] == pytest.approx(best["rmse"], abs=0.05)
    assert meta["index"]["titles"][0].startswith("Film ") and meta["k"] == 20
    assert {"topk", "rating", "topk_int8", "rating_int8"} == set(meta["files"])
    # onnxruntime on its own: a user's list is the PyTorch model's best unseen items
    dep = load_deployable(pipeline_run)
    onnx = open_onnx(out)
    u = np.array([7])
    scores, items = onnx.top(u, dep.seen_padded(u))
    full = dep.model.score_all(torch.tensor(u))[0].detach()
    full[torch.from_numpy(dep.seen(7))] = -torch.inf
    assert items[0].tolist() == torch.topk(full, 20).indices.tolist()
    assert np.abs(scores[0] - torch.topk(full, 20).values.numpy()).max() <= 1e-4
    assert "parity over 40 users" in capsys.readouterr().out


def test_the_ensemble_and_its_pairwise_members_export(pipeline_run, tmp_path):
    """The ensemble's graphs hold every member of the run (svd, xdeepfm, autoint, ease; a
    member of weight 0 is traced too), so one export exercises each member's."""
    dep = load_deployable(pipeline_run / "teachers" / "ensemble")
    mixed = set(dep.model.ranking_mix) | set(dep.model.rating_mix)
    assert {"svd", "xdeepfm", "autoint", "ease"} <= mixed
    meta = export(dep, tmp_path / "ensemble", k=10, bench_seconds=0.02)
    assert meta["parity"]["passed"] and meta["parity"]["topk_differ"] == 0
    assert meta["model"]["kind"] == "ensemble"


def test_parity_failure_is_reported(pipeline_run, tmp_path):
    """A graph that is not the model's must fail the check, not pass silently."""
    dep = load_deployable(pipeline_run)
    out = tmp_path / "onnx"
    export(dep, out, k=10, bench_seconds=0.02)
    with torch.no_grad():
        dep.model.rank_bias.emb["item_id"].weight[3] += 5.0
    from pakd.deploy.onnx_export import parity, run_encoding
    res = parity(dep, TorchGraphs(dep.model, 10), open_onnx(out), run_encoding(dep), batch=16)
    assert not res["passed"] and res["max_abs_score_diff"] > 1e-4 and res["topk_differ"] > 0


def test_bad_export_requests_say_what_to_do(pipeline_run, tmp_path, capsys):
    assert main(["export", "--model", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "no model there" in capsys.readouterr().err
    with pytest.raises(SystemExit) as ei:        # refused by the parser, as usage errors are
        main(["export", "--model", str(pipeline_run), "--out", str(tmp_path / "o"), "-k", "0"])
    assert ei.value.code == 2 and "-k must be at least 1" in capsys.readouterr().err
    with pytest.raises(PakdError, match="pakd export"):
        open_onnx(tmp_path / "missing")


def test_random_student_without_a_run_exports(tiny_enc, tmp_path):
    """A model outside any run: no seen items, no accuracy, parity still checked."""
    from pakd.models import save
    model = randomised("lightweight_model", tiny_enc).float()
    stem = tmp_path / "m"
    save(model, stem)
    (tmp_path / "m.catalog.json").write_text(json.dumps(
        {"user_ids": list(range(tiny_enc.n_users)), "item_ids": list(range(tiny_enc.n_items)),
         "titles": None}))
    meta = export(load_deployable(stem), tmp_path / "o", k=5, bench_seconds=0.02)
    assert meta["parity"]["passed"] and meta["measured"]["onnx_fp32"]["metrics"] is None
    assert meta["model"]["params"] == model.n_params()


def test_lists_may_differ_only_where_scores_tie():
    from pakd.deploy.onnx_export import _ties_only
    ref = np.array([3.0, 2.0, 2.0 + 2e-6, 1.0])      # items 1 and 2 tie within float noise
    assert _ties_only(ref, ref + 1e-6, np.array([False, True, True, False]))
    assert not _ties_only(ref, ref, np.array([True, True, False, False]))   # 3.0 vs 2.0
    assert not _ties_only(ref, ref + 1e-3, np.array([False, True, True, False]))
