"""Several seeds of one experiment, pooled.

One seed's run can rank methods only within its own noise: a second seed of the same
configuration moves NDCG@10 by about 0.004 on ml-latest-small, as much as many gaps between
methods. ``pakd run --seeds 0,1,2`` therefore runs the whole experiment once per seed (its
own split, initialisation and negatives) in ``RUN/seed-<s>``, and this recipe reads those
runs back and writes ``RUN/seeds.json`` and ``RUN/seeds.md``:

- every row (teacher, members, each student) per seed, with the mean and the standard
  deviation over seeds;
- pooled paired differences from the teacher and, for students, from fisher_kd at the same
  budget: the mean of the per-seed differences with a two-stage bootstrap interval (seeds,
  then users within each seed; `pakd.stats.pooled_paired`) and, beside it, Student's t
  interval over the per-seed differences (with few seeds the bootstrap can be narrower
  than the seeds' spread; the t interval is not);
- a verdict for every comparison with fisher_kd on NDCG@10 and RMSE that survives Holm's
  correction over all of them (every baseline, every budget, both metrics), so calling a
  winner among many comparisons keeps the family-wise error at 5%; p-values are written
  with their resolution ("< 0.002 (1,000 resamples)", never "0.000"); the family's
  differences draw enough resamples that this resolution, times Holm's multiplier, stays
  below 5% / 4 (`pakd.pool.verdict_resamples`), and a verdict the t interval does not
  share is marked;
- NDCG@10 with only the held-out items rated >= 4 relevant (``ndcg@10_rel4``), mean and
  sd over seeds beside NDCG@10;
- the teachers' damage predictors per member: Spearman measured on the test part (out of
  sample) over seeds, the valid part's (in-sample for Taylor) beside it, and each
  predictor's paired difference from magnitude, with a t interval over seeds.
"""
from __future__ import annotations

from pathlib import Path

from ..atomic import atomic_write_text
from ..errors import PakdError
from ..pool import (ALPHA, fisher_over_seeds, holm_verdicts, key_of, pool_row,
                    verdict_resamples)
from ..report.seeds import seeds_markdown
from ..results import FisherAnalysis, PakdExperiment, load_result
from ..rundir import RunDir, write_json
from ..stats import POOLED_FIELDS


def seed_dir(root: str | Path, seed: int) -> Path:
    return Path(root) / f"seed-{seed}"


def _experiment(rd: RunDir) -> PakdExperiment:
    if not rd.pakd_json.is_file():
        raise PakdError(f"{rd.pakd_json} not found: the run of this seed has not finished its "
                        f"distill stage; run `pakd run --run {rd.root.parent} --seeds ...` again "
                        "(finished stages are kept with --resume)")
    return load_result(rd.pakd_json, PakdExperiment)


def pool(root: str | Path, seeds: list[int], *, resamples: int = 1000) -> dict:
    """Read the seeds' runs under ``root``; write and return the pooled results."""
    if len(set(seeds)) != len(seeds):
        raise PakdError(f"--seeds lists a seed twice ({seeds}); give distinct seeds")
    runs = {s: RunDir(seed_dir(root, s)) for s in seeds}
    exps = {s: _experiment(rd) for s, rd in runs.items()}
    teacher_name = {s: e.settings["teacher"] for s, e in exps.items()}

    def per_user(s: int, row: dict) -> dict:
        name = teacher_name[s] if row["method"] == "teacher" else \
            row["model"] if row["method"] == "member" else Path(row["file"]).name
        return runs[s].load_per_user(name, "test")

    rows_by_seed = {s: {key_of(r): r for r in [e.teacher, *e.members, *e.rows]}
                    for s, e in exps.items()}
    keys = [k for k in rows_by_seed[seeds[0]] if all(k in rows_by_seed[s] for s in seeds)]
    missing = sorted({str(k) for s in seeds for k in rows_by_seed[s]} - {str(k) for k in keys})
    t_rows = {s: rows_by_seed[s][("teacher", None)] for s in seeds}
    t_users = {s: per_user(s, t_rows[s]) for s in seeds}
    family_resamples = verdict_resamples(keys, resamples)
    out_rows = [pool_row(k, {s: rows_by_seed[s][k] for s in seeds}, t_rows, t_users, per_user,
                         keys, rows_by_seed, resamples, family_resamples) for k in keys]
    holm_verdicts(out_rows, family_resamples)
    fisher = {s: load_result(rd.fisher_json, FisherAnalysis) for s, rd in runs.items()
              if rd.fisher_json.is_file()}
    out = {"seeds": seeds, "runs": {str(s): str(rd.root) for s, rd in runs.items()},
           "dataset": exps[seeds[0]].dataset, "rows": out_rows,
           "fisher": fisher_over_seeds(fisher),
           "left_out": missing, "resamples": resamples,
           "family_resamples": family_resamples, "alpha": ALPHA,
           "pooled_fields": list(POOLED_FIELDS),
           "family": "each method against fisher_kd at the same budget, on NDCG@10 and RMSE"}
    write_json(Path(root) / "seeds.json", out)
    atomic_write_text(Path(root) / "seeds.md", seeds_markdown(out))
    return out
