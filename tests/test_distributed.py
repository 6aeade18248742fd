"""Several processes through torch.distributed (gloo, launched by torchrun): the same
training as one process."""
import json
import subprocess
import sys

import pytest

from pakd import distributed

CONNECT_ERRORS = ("RendezvousConnectionError", "Address already in use", "EADDRINUSE",
                  "Connection refused", "Connection reset")


def _pakd(*args: str) -> None:
    """Run ``python -m pakd ARGS``; a failure fails the test with the whole stderr (a failed
    rank's traceback comes before torchrun's summary)."""
    cmd = [sys.executable, "-m", "pakd", *args]
    got = subprocess.run(cmd, timeout=300, capture_output=True, text=True)
    if got.returncode and any(w in got.stderr for w in CONNECT_ERRORS):
        # the launcher could not connect its processes (a port taken meanwhile): that is the
        # machine, not the training - launch once more
        got = subprocess.run(cmd, timeout=300, capture_output=True, text=True)
    assert got.returncode == 0, got.stderr[-12000:]


def test_shards_cover_a_batch_once():
    assert distributed.world() == 1 and distributed.shard(37) == slice(0, 37)


def test_nproc_beyond_the_machine_is_refused():
    import os

    from pakd.errors import PakdError
    with pytest.raises(PakdError, match="more processes than this machine has CPU cores"):
        distributed.launch((os.cpu_count() or 1) + 64, ["train", "--run", "x"])
    with pytest.raises(PakdError, match="at least 1"):
        distributed.launch(0, ["train", "--run", "x"])


def test_train_with_nproc_2_writes_what_one_process_writes(tmp_path, tiny_files):
    """`pakd train --nproc 2` launches torchrun (gloo): the same global batch and seed give
    the same training and validation history and test metrics as one process, within 1e-4
    (the float sums run in another order); rank 0 alone writes the members and fits the
    closed-form one."""
    from pakd.cli import main

    def train(run, nproc):
        args = ["train", "--run", str(run), "--dataset", str(tiny_files / "ratings.csv"),
                "--columns", "user=userId,item=movieId", "--models", "svd,xdeepfm,ease",
                "--profile", "quick", "--xdeepfm-epochs", "2", "--xdeepfm-batch-size", "37",
                "-q"]                                             # 37: uneven shards
        if nproc == 1:
            assert main(args) == 0          # in this process: no second import of torch
        else:
            _pakd(*args, "--nproc", str(nproc))
        return {m: json.loads((run / "teachers" / f"{m}.json").read_text())
                for m in ("svd", "xdeepfm", "ease")}
    one = train(tmp_path / "one", 1)
    two = train(tmp_path / "two", 2)
    for m in ("svd", "xdeepfm"):
        for k in ("rmse", "ndcg@10", "auc"):
            assert two[m]["test"][k] == pytest.approx(one[m]["test"][k], abs=1e-4), (m, k)
        h1, h2 = one[m]["fit"]["history"], two[m]["fit"]["history"]
        assert len(h1) == len(h2) >= 1
        for a, b in zip(h1, h2):
            for k in ("train_loss", "valid_loss"):
                assert b[k] == pytest.approx(a[k], rel=1e-4), (m, k)
        assert "processes" not in h1[0]
        assert h2[0]["processes"] == 2 and h2[0]["allreduce_bytes_per_step"] > 0
    assert len(one["xdeepfm"]["fit"]["history"]) == 2
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

    from pakd.cli import main

    def pakd(*args: str, nproc: int = 1) -> None:
        """One process: in this one (no second import of torch); two: through torchrun."""
        if nproc == 1:
            assert main(list(args)) == 0
        else:
            _pakd(*args, "--nproc", str(nproc))

    base = tmp_path / "base"
    pakd("train", "--run", str(base), "--dataset", str(tiny_files / "ratings.csv"),
         "--columns", "user=userId,item=movieId", "--models", "svd,autoint",
         "--profile", "quick", "-q")
    pakd("ensemble", "--run", str(base), "--algorithms", "svd,autoint", "-q")
    fisher, rows = {}, {}
    for n in (1, 2):
        run = tmp_path / f"r{n}"
        shutil.copytree(base, run)
        pakd("fisher", "--run", str(run), "-q", "--fisher", "both", "--fisher-batch", "37",
             "--mc-samples", "2", "--validate-units", "0", nproc=n)
        pakd("distill", "--run", str(run), "-q", "--distill-teacher", "svd", "--methods",
             "fisher_kd,magnitude_kd,scratch", "--pruning-ratios", "0.5", "--ablation",
             "false", "--check-units", "0", "--bench-memory", "false",
             *(["--distill-workers", "1", "--threads", "1"] if n == 1 else []), nproc=n)
        res = run / "analysis_results"
        fisher[n] = json.loads((res / "ensemble_fisher_analysis.json").read_text())["models"]
        out = json.loads((res / "pakd_experiment.json").read_text())
        rows[n] = {(r["method"], r["budget"]): r for r in out["rows"]}
    assert set(fisher[1]) == set(fisher[2]) == {"svd", "autoint"}
    for name in fisher[1]:
        for obj, by_kind in fisher[1][name]["by_objective"].items():
            for kind, got in by_kind.items():
                other = fisher[2][name]["by_objective"][obj][kind]
                for a, b in zip(got["layers"], other["layers"]):
                    assert a["name"] == b["name"]
                    assert b["fisher_trace"] == pytest.approx(a["fisher_trace"], rel=1e-9,
                                                              abs=1e-12), (name, obj, kind)
    # three rounds under torchrun: dense_kd, the students pruned from it, then scratch
    assert set(rows[1]) == set(rows[2]) == {("dense_kd", "dense"), ("fisher_kd", "0.5"),
                                            ("magnitude_kd", "0.5"), ("scratch", "0.5")}
    for key, a in rows[1].items():
        b = rows[2][key]
        assert b["params"] == a["params"] and b["arch"] == a["arch"], key
        for k in ("rmse", "ndcg@10", "auc"):
            assert b[k] == pytest.approx(a[k], abs=1e-6), (key, k)
    assert rows[2][("scratch", "0.5")]["arch"] == rows[2][("fisher_kd", "0.5")]["arch"]
