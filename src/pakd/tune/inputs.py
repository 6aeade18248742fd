"""What a study's trials depend on besides their settings: the teacher's files, and the
run's trained dense student they may start from (`pakd.tune.space`)."""
from __future__ import annotations

from ..config import RunConfig
from ..distill.students import make_student
from ..distill.sweep import DENSE as DENSE_LABEL
from ..models import load
from ..rundir import RunDir, fingerprint
from ..runtime import log


def identity(cfg: RunConfig, rd: RunDir, dense: str | None) -> dict:
    """What every trial depends on besides its settings: the seed, the teacher and its
    files, and the dense student trials may start from."""
    files = rd.teacher_files(cfg.distill.teacher)
    if cfg.distill.teacher == "ensemble":
        files = [rd.ensemble, *files]
    out = {"seed": cfg.seed, "teacher": cfg.distill.teacher,
           "teacher_files": fingerprint({}, files)}
    if dense is not None:
        out["dense_student"] = fingerprint({}, [rd.weights(dense)])
    return out


def dense_student(cfg: RunConfig, rd: RunDir, enc) -> str | None:
    """The run's trained dense student (its stem) when trials may start from it: saved,
    and of the run's own student kind and architecture (run.yaml may have changed since)."""
    stem = rd.student("dense_kd", DENSE_LABEL)
    if not rd.weights(stem).is_file() or not stem.with_suffix(".json").is_file():
        return None
    model, _ = load(stem)
    own = make_student(cfg, enc)
    if model.kind != own.kind or model.arch() != own.arch() or model.n_params() != own.n_params():
        log.info("%s is not of the run's student settings: trials start fresh (init)", stem)
        return None
    return str(stem)
