"""Several processes through torch.distributed (gloo, launched by torchrun): the same
training as one process."""
import json
import subprocess
import sys
import textwrap

import pytest
import torch

from pakd import distributed

SCRIPT = textwrap.dedent('''
    import json, sys
    import torch
    import pakd
    from pakd import distributed
    from pakd.config import RunConfig, fit_kwargs
    from pakd.models import build
    from pakd.train import fit

    data, kind, out = sys.argv[1], sys.argv[2], sys.argv[3]
    distributed.init()
    torch.set_num_threads(1)
    ds = pakd.load_dataset(data + "/ratings.csv", columns={"user": "userId", "item": "movieId"},
                           item_features=data + "/items.csv", item_key="movieId")
    enc = pakd.encode(ds, pakd.split(ds, seed=0))
    arch = {"svd": {"factors": 6, "rank_factors": 5},
            "xdeepfm": {"embed_dim": 4, "cin_layers": [6, 4], "dnn": [8]}}[kind]
    kw = fit_kwargs(getattr(RunConfig(), kind))
    kw.update(epochs=3, batch_size=37, patience=3, micro_batch=0)   # 37: uneven shards
    torch.manual_seed(5)
    model = build(kind, enc.schema, arch, tables=enc.tables, rating_mean=3.0)
    res = fit(model, enc, **kw, seed=3, quiet=True)
    if distributed.is_main():
        va = enc.parts["valid"]
        with torch.no_grad():
            torch.save({"rating": model.predict(va.user, va.item),
                        "scores": model.score_all(torch.arange(enc.n_users))}, out + ".pt")
        json.dump(res.history, open(out + ".json", "w"))
''')


CONNECT_ERRORS = ("RendezvousConnectionError", "Address already in use", "EADDRINUSE",
                  "Connection refused", "Connection reset")


def _run(tmp_path, data, kind, nproc):
    script = tmp_path / "train_one.py"
    script.write_text(SCRIPT)
    out = tmp_path / f"{kind}_{nproc}"
    launcher = [] if nproc == 1 else ["-m", "torch.distributed.run", "--standalone",
                                      f"--nproc-per-node={nproc}"]
    cmd = [sys.executable, *launcher, str(script), str(data), kind, str(out)]
    got = subprocess.run(cmd, timeout=300, capture_output=True, text=True)
    if got.returncode and any(w in got.stderr for w in CONNECT_ERRORS):
        # the launcher could not connect its processes (a port taken meanwhile): that is the
        # machine, not the training - launch once more. Any other failure fails the test
        # with the launcher's stderr (one unexplained failure in ~12 runs, before the
        # stderr was kept)
        got = subprocess.run(cmd, timeout=300, capture_output=True, text=True)
    assert got.returncode == 0, got.stderr[-3000:]
    return (torch.load(f"{out}.pt", weights_only=True),
            json.loads(open(f"{out}.json").read()))


def test_shards_cover_a_batch_once():
    assert distributed.world() == 1 and distributed.shard(37) == slice(0, 37)


@pytest.mark.parametrize("kind", ["xdeepfm"])   # svd: the --nproc test below
def test_two_gloo_processes_train_what_one_process_trains(kind, tmp_path, tiny_files):
    """Issue 13: torchrun with 2 processes, the same global batch and seed -> the same
    predictions and the same training and validation history as 1 process, within 1e-4
    (the float sums run in another order)."""
    one, hist1 = _run(tmp_path, tiny_files, kind, 1)
    two, hist2 = _run(tmp_path, tiny_files, kind, 2)
    assert torch.allclose(one["rating"], two["rating"], atol=1e-4)
    # ranking scores up to a constant per user: a per-user shift cancels in every ranking
    # loss, so its gradient is zero up to rounding, and AdamW turns rounding of another
    # summation order into different (harmless) steps along it
    centred = [x["scores"] - x["scores"].mean(1, keepdim=True) for x in (one, two)]
    assert torch.allclose(*centred, atol=1e-4)
    assert len(hist1) == len(hist2) == 3
    for a, b in zip(hist1, hist2):
        assert a["valid_loss"] == pytest.approx(b["valid_loss"], rel=1e-4)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
    assert "processes" not in hist1[0]
    assert hist2[0]["processes"] == 2 and hist2[0]["allreduce_bytes_per_step"] > 0


def test_nproc_beyond_the_machine_is_refused():
    import os

    from pakd.errors import PakdError
    with pytest.raises(PakdError, match="more processes than this machine has CPU cores"):
        distributed.launch((os.cpu_count() or 1) + 64, ["train", "--run", "x"])
    with pytest.raises(PakdError, match="at least 1"):
        distributed.launch(0, ["train", "--run", "x"])


def test_train_with_nproc_2_writes_what_one_process_writes(tmp_path, tiny_files):
    """`pakd train --nproc 2` launches torchrun; rank 0 alone writes the members, whose
    metrics equal one process's within the stated tolerance."""
    def train(run, *extra):
        cmd = [sys.executable, "-m", "pakd", "train", "--run", str(run), "--dataset",
               str(tiny_files / "ratings.csv"), "--columns", "user=userId,item=movieId",
               "--models", "svd,xdeepfm,ease", "--profile", "quick", "-q", *extra]
        got = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert got.returncode == 0, got.stderr[-2000:]
        return {m: json.loads((run / "teachers" / f"{m}.json").read_text())
                for m in ("svd", "xdeepfm", "ease")}
    one = train(tmp_path / "one")
    two = train(tmp_path / "two", "--nproc", "2")
    for m in ("svd", "xdeepfm"):
        for k in ("rmse", "ndcg@10", "auc"):
            assert two[m]["test"][k] == pytest.approx(one[m]["test"][k], abs=1e-4), (m, k)
        assert two[m]["fit"]["history"][0]["processes"] == 2
    assert two["ease"]["test"] == one["ease"]["test"]          # closed form, rank 0 alone
    assert not list((tmp_path / "two").glob("pakd.log.*"))


def test_stages_that_run_in_one_process_say_so_under_torchrun(tmp_path):
    env = {**__import__("os").environ, "RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}
    got = subprocess.run([sys.executable, "-m", "pakd", "report", "--run", str(tmp_path / "r")],
                         capture_output=True, text=True, env=env, timeout=60)
    assert got.returncode == 2 and "runs in one process" in got.stderr


def test_fisher_and_distill_with_nproc_2_equal_one_process(tmp_path, tiny_files):
    """`pakd fisher --nproc 2`: each process sums the Fisher of every other batch and the
    sums are all-reduced, so every member's layer traces equal one process's (the
    Monte-Carlo labels are drawn per batch, not per process). `pakd distill --nproc 2`: the
    students are shared out over the processes (the scratch baseline, which copies
    fisher_kd's final architecture, in a second round), and every row equals the one a
    single process trains (each student on one thread either way)."""
    import shutil

    base = tmp_path / "base"
    pakd = [sys.executable, "-m", "pakd"]
    for cmd in (["train", "--run", str(base), "--dataset", str(tiny_files / "ratings.csv"),
                 "--columns", "user=userId,item=movieId", "--models", "svd,autoint",
                 "--profile", "quick", "-q"],
                ["ensemble", "--run", str(base), "--algorithms", "svd,autoint", "-q"]):
        got = subprocess.run([*pakd, *cmd], capture_output=True, text=True, timeout=300)
        assert got.returncode == 0, got.stderr[-2000:]
    fisher, rows = {}, {}
    for n in (1, 2):
        run = tmp_path / f"r{n}"
        shutil.copytree(base, run)
        nproc = ["--nproc", "2"] if n == 2 else []
        for cmd in (["fisher", "--fisher", "both", "--fisher-batch", "37", "--mc-samples", "2",
                     "--validate-units", "0", *nproc],
                    ["distill", "--distill-teacher", "svd", "--methods",
                     "fisher_kd,magnitude_kd,scratch", "--pruning-ratios", "0.5",
                     "--ablation", "false", "--check-units", "0",
                     *(nproc or ["--distill-workers", "1", "--threads", "1"])]):
            got = subprocess.run([*pakd, cmd[0], "--run", str(run), "-q", *cmd[1:]],
                                 capture_output=True, text=True, timeout=300)
            # the whole stderr: a failed rank's traceback comes before torchrun's summary
            # (one unexplained 2-process failure in ~6 runs so far)
            assert got.returncode == 0, got.stderr[-12000:]
        res = run / "analysis_results"
        fisher[n] = json.loads((res / "ensemble_fisher_analysis.json").read_text())["models"]
        out = json.loads((res / "pakd_experiment.json").read_text())
        rows[n] = {(r["method"], r["pruning_ratio"]): r for r in out["rows"]}
    assert set(fisher[1]) == set(fisher[2]) == {"svd", "autoint"}
    for name in fisher[1]:
        for obj, by_kind in fisher[1][name]["by_objective"].items():
            for kind, got in by_kind.items():
                other = fisher[2][name]["by_objective"][obj][kind]
                for a, b in zip(got["layers"], other["layers"]):
                    assert a["name"] == b["name"]
                    assert b["fisher_trace"] == pytest.approx(a["fisher_trace"], rel=1e-9,
                                                              abs=1e-12), (name, obj, kind)
    assert set(rows[1]) == set(rows[2]) == {("fisher_kd", 0.5), ("magnitude_kd", 0.5),
                                            ("scratch", 0.5)}
    for key, a in rows[1].items():
        b = rows[2][key]
        assert b["params"] == a["params"] and b["arch"] == a["arch"], key
        for k in ("rmse", "ndcg@10", "auc"):
            assert b[k] == pytest.approx(a[k], abs=1e-6), (key, k)
    assert rows[2][("scratch", 0.5)]["arch"] == rows[2][("fisher_kd", 0.5)]["arch"]
