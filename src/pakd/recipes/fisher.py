"""Recipe `fisher`: the teachers' Fisher information, aggregated and checked.

1. Examples: a seeded sample of train ratings, each with one sampled negative (and of the
   valid and test parts, likewise, for the checks: all of them up to ``check_sample``).
2. Per member: the diagonal Fisher of the rating and ranking objectives (empirical and/or
   true); then, through the ensemble, the ensemble objective, whose gradients reach every
   member.
3. Per member: unit costs, sensitivity, pruning friendliness and top layers per objective
   (`fisher.analysis.summarise`), a plan for ``plan_ratio`` fewer parameters, the predicted
   damage of removing sampled units one at a time against the measured one
   (`fisher.damage.check_units`) and the plan applied physically (`check_plan`).
4. RUN/analysis_results/ensemble_fisher_analysis.json|_summary.md (the analysis),
   movielens_fisher_experiment.json (the record: data, split, settings, timings), plots.
"""
from __future__ import annotations

import time

import torch

from .. import distributed
from ..config import RunConfig
from ..data import load_encoded
from ..data.encoding import Encoded
from ..errors import PakdError
from ..fisher.damage import Examples
from ..fisher.member import analyse, estimate
from ..models.ensemble import Ensemble
from ..report.fisher import fisher_markdown, fisher_plots
from ..results import FisherAnalysis, FisherExperiment, FisherPart, load_marker, write_result
from ..rundir import RunDir, fingerprint
from ..runtime import log
from ..scores import member_scores

CRITERION = ("importance of removing parameters S = 1/2 sum_S F theta^2 (diagonal Fisher as "
             "Hessian, per-example mean loss units)")


EVERY_RANK = True     # under torchrun every process trains (`pakd.recipes.Stage`)


def run(cfg: RunConfig, rd: RunDir, enc: Encoded | None = None) -> FisherAnalysis | dict:
    enc = enc or load_encoded(cfg, rd)
    fc = cfg.fisher
    kinds = ["empirical", "true"] if fc.fisher == "both" else [fc.fisher]
    ens, members = teachers(cfg, rd)
    focus = list(fc.focus_tasks)
    if "ensemble" in focus and ens is None:
        log.warning("no ensemble: the ensemble objective is skipped")
        focus.remove("ensemble")
    ex = Examples.of_part(enc, "train", fc.sample, cfg.seed + 17)
    parts = {"valid": Examples.of_part(enc, "valid", fc.check_sample, cfg.seed + 29),
             "test": Examples.of_part(enc, "test", fc.check_sample, cfg.seed + 31),
             **({"train": ex} if fc.check_train_sample else {})}
    fishers, sigma2, timings = estimate(cfg, rd, enc, members, ens, ex, focus, kinds)
    if not distributed.is_main():     # under torchrun every rank estimates; rank 0 analyses
        return {}
    only = None if fc.target_layers == ["all"] else fc.target_layers
    results, fp = {}, analysis_fingerprint(cfg, rd, members)
    for name, model in members.items():
        kept = _kept_part(rd, name, fp) if cfg.resume else None
        if kept is not None:
            results[name], timings[name]["analysis_seconds"] = kept
            log.info("Fisher %s: analysis kept from an earlier run (--resume)", name)
            continue
        t0 = time.perf_counter()
        cached = member_scores(cfg, rd, name, model, enc) if rd.has_member(name) else None
        results[name] = analyse(cfg, enc, name, model, fishers[name], kinds, focus, only,
                                parts, sigma2, ens, cached)
        timings[name]["analysis_seconds"] = time.perf_counter() - t0
        write_result(rd.fisher_part(name), FisherPart(fingerprint=fp, result=results[name],
                                                      seconds=timings[name]["analysis_seconds"]))
        log.info("Fisher %s: analysis and checks %.1fs", name, timings[name]["analysis_seconds"])
    out = FisherAnalysis(teacher=fc.teacher, dataset=cfg.data.dataset, focus_tasks=focus,
                         fisher=kinds, criterion=CRITERION, sigma2=sigma2, models=results,
                         timings=timings)
    write_result(rd.fisher_json, out)
    exp = experiment_record(cfg, rd, out)
    write_result(rd.fisher_experiment_json, exp)
    rd.write_text(rd.fisher_md, fisher_markdown(out, experiment=exp))
    fisher_plots(out, rd)
    return out


def teachers(cfg: RunConfig, rd: RunDir) -> tuple[Ensemble | None, dict]:
    """(the ensemble if saved, the members to analyse): every ensemble member with prunable
    structure, or the one ``fisher.teacher``."""
    fc = cfg.fisher
    ens: Ensemble | None = rd.load_ensemble() if rd.ensemble.is_file() else None
    if fc.teacher != "ensemble":
        return ens, {fc.teacher: ens.members[fc.teacher] if ens is not None and fc.teacher in
                     ens.members else rd.load_member(fc.teacher)[0]}
    if ens is None:
        raise PakdError(f"no ensemble in {rd}; run `pakd ensemble --run {rd}` or pick a "
                        "single --fisher-teacher")
    members = {n: m for n, m in ens.members.items() if m.structure()}
    for n in set(ens.members) - set(members):
        log.info("fisher: %s has no prunable structure (closed form); not analysed", n)
    return ens, members


def experiment_record(cfg: RunConfig, rd: RunDir, out: FisherAnalysis) -> FisherExperiment:
    """The record beside the analysis: data, split, settings, timings and per member the
    headline figures."""
    return FisherExperiment.model_validate({
            "dataset": cfg.data.dataset, "data": cfg.data.model_dump(),
            "split": rd.split_summary(), "settings": cfg.fisher.model_dump(),
            "threads": torch.get_num_threads(), "seed": cfg.seed, "timings": out.timings,
            "sigma2": out.sigma2,
            "summary": {n: {"pruning_friendliness": m["pruning_friendliness"],
                            "sensitivity": m["sensitivity"],
                            # out of sample: measured on the test part (headline_part);
                            # absent when no unit was checked (--validate-units 0)
                            "damage_measured_on": m["validation"].get("headline_part"),
                            **{f"spearman_{k}": m["validation"].get(f"spearman_{k}")
                               for k in ("empirical", "true", "taylor", "magnitude")},
                            "beats": m["validation"].get("beats", {})}
                        for n, m in out.models.items()}})


def analysis_fingerprint(cfg: RunConfig, rd: RunDir, members: dict) -> str:
    """What a member's analysis depends on: the seed, the Fisher and evaluation settings and
    the teachers' files (the ensemble objective reads every member)."""
    files = [rd.weights(rd.member(n)) for n in members if rd.has_member(n)]
    if rd.ensemble.is_file():
        files += [rd.ensemble, *rd.teacher_files("ensemble")]
    return fingerprint({"seed": cfg.seed, "fisher": cfg.fisher.model_dump(mode="json"),
                        "eval": cfg.eval.model_dump(mode="json")}, files)


def _kept_part(rd: RunDir, name: str, fp: str):
    """(analysis, seconds) of a member finished under fingerprint ``fp``, else None."""
    got = load_marker(rd.fisher_part(name), FisherPart, fp)
    return None if got is None else (got.result, got.seconds)
