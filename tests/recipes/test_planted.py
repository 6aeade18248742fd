"""The pipeline on data with a planted structure: a test that fails when learning or
distillation breaks (the shared pipeline run trains on random ratings and cannot)."""
import json

import numpy as np
import pandas as pd
import pytest

from pakd.cli import main


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """80 users in two taste groups x 80 items: each user rates 16 items of its group
    (popular ones more often) 4-5 stars and 4 of the other group 1-2 stars. MostPop cannot
    see the groups; a model that learns them ranks and rates far better."""
    root = tmp_path_factory.mktemp("planted")
    rng = np.random.default_rng(7)
    rows = []
    for u in range(80):
        g = u % 2
        own = [i for i in range(80) if i % 2 == g]
        other = [i for i in range(80) if i % 2 != g]
        p = np.linspace(2, 1, len(own))
        liked = rng.choice(own, size=16, replace=False, p=p / p.sum())
        for j, i in enumerate(list(liked) + list(rng.choice(other, size=4, replace=False))):
            r = float(rng.integers(4, 6)) if i % 2 == g else float(rng.integers(1, 3))
            rows.append((u + 1, int(i) + 1, r, 10_000 + 100 * j + u))
    pd.DataFrame(rows, columns=["userId", "movieId", "rating", "ts"]).to_csv(root / "r.csv",
                                                                             index=False)
    out = root / "run"
    assert main(["run", "--out", str(out), "--dataset", str(root / "r.csv"), "--columns",
                 "user=userId,item=movieId,rating=rating,timestamp=ts", "--profile", "quick",
                 "--threads", "1", "-q", "--methods", "fisher_kd,random_kd", "--bench-memory",
                 "false",
                 "--svd-epochs", "20", "--svd-batch-size", "128", "--svd-lr", "0.02",
                 "--xdeepfm-epochs", "2", "--xdeepfm-batch-size", "256",
                 "--autoint-epochs", "2", "--autoint-batch-size", "256",
                 "--distill-epochs", "8", "--distill-batch-size", "128"]) == 0
    return out


def test_teacher_and_student_learn_the_planted_groups(planted):
    t = json.loads((planted / "teachers.json").read_text())
    pop, mean_rmse = t["baselines"]["mostpop"]["ndcg@10"], t["baselines"]["global_mean"]["rmse"]
    ens = t["ensemble"]
    assert ens["ndcg@10"] >= 1.8 * pop, (ens["ndcg@10"], pop)
    assert ens["rmse"] <= 0.8 * mean_rmse, (ens["rmse"], mean_rmse)
    res = json.loads((planted / "analysis_results" / "pakd_experiment.json").read_text())
    student = next(r for r in res["rows"] if r["method"] == "fisher_kd")
    assert student["ndcg@10"] >= 1.8 * pop, (student["ndcg@10"], pop)
    assert student["pruning_ratio"] >= 0.45         # at half its size (quick profile: 0.5)
