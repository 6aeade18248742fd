"""A run's results as typed models, written and read through one versioned schema.

Four kinds of result file: the teachers' table (RUN/teachers.json, `TeachersReport`), the
distillation sweep (RUN/analysis_results/pakd_experiment.json, `PakdExperiment`, its rows
`SweepRow`), the Fisher analysis and its record (`FisherAnalysis`, `FisherExperiment`) and
the run's seconds and memory per stage (RUN/timings.json, `RunTimings`, which summary.md
is made from with the others). Every writer calls `write_result` and every reader
`load_result`, so each file carries ``schema_version`` and is checked on the way in: a
required key that is missing names the key and the file, and a file from a newer pakd says
which versions this one reads instead of failing somewhere in a report. Files written
before the field existed (the kept runs in benchmarks/results/) read as version 1.

Rows carry open-ended keys (every metric, the speed measurements, the intervals), so rows
are TypedDicts that allow extra keys: they stay plain dicts whose required keys are
validated. A model also reads like a mapping (``res["members"]``, ``res.get(...)``) for
the renderers, which index sections and rows by name alike.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Optional, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, with_config
from typing_extensions import Required, TypedDict

from .errors import PakdError
from .rundir import read_json, write_json

SCHEMA_VERSION = 1          # what this pakd writes
READS = (1,)                # the versions this pakd reads
_OPEN = ConfigDict(extra="allow")
Num = Optional[float]       # a metric: None where the model has no such output


def _open(td):
    """A TypedDict that keeps keys it does not declare (they are validated as Any)."""
    return with_config(_OPEN)(td)


# ----------------------------------------------------------------------------- rows

# a member, ensemble or baseline row of the teachers' table: test metrics and size
MetricRow = _open(TypedDict("MetricRow", {
    "params": Required[int], "rmse": Num, "mae": Num, "auc": Num, "logloss": Num,
    "recall@10": Num, "ndcg@10": Num, "ci95": dict}, total=False))

MemberRow = _open(TypedDict("MemberRow", {
    "params": Required[int], "rmse": Required[Num], "ndcg@10": Required[Num],
    "train_seconds": Required[float], "epochs_run": Required[int],
    "best_epoch": Required[Optional[int]], "arch": Required[dict], "mae": Num, "auc": Num,
    "logloss": Num, "recall@10": Num, "ci95": dict}, total=False))

EnsembleRow = _open(TypedDict("EnsembleRow", {
    "params": Required[int], "rmse": Required[Num], "ndcg@10": Required[Num],
    "weights": Required[dict[str, float]], "tasks": Required[dict[str, str]],
    "ci95": dict}, total=False))

# a row of the sweep table: one student (`pakd.distill.sweep.train_row`), later given its
# speed, size and retention figures; ``budget`` is absent in runs that predate budgets
SweepRow = _open(TypedDict("SweepRow", {
    "method": Required[str], "model": Required[str], "params": Required[int],
    "pruning_ratio": Required[Optional[float]], "rmse": Required[Num],
    "ndcg@10": Required[Num], "valid": Required[dict[str, Num]],
    "train_seconds": Required[float], "epochs_run": Required[int], "arch": Required[dict],
    "file": Required[str], "budget": Optional[str], "target_params": Optional[int],
    "mae": Num, "auc": Num, "logloss": Num, "recall@10": Num, "ndcg@10_rel4": Num,
    "best_epoch": Optional[int], "reference": Optional[str]}, total=False))

# the teacher's and each ensemble member's row of the sweep table
ReferenceRow = _open(TypedDict("ReferenceRow", {
    "method": Required[str], "model": Required[str], "params": Required[int],
    "rmse": Required[Num], "ndcg@10": Required[Num], "budget": Optional[str],
    "valid": dict[str, Num]}, total=False))

CurveEntry = _open(TypedDict("CurveEntry", {"method": Required[str],
                                            "history": Required[list]}, total=False))

StageTime = _open(TypedDict("StageTime", {"fisher_seconds": Required[float],
                                          "examples": Required[int]}, total=False))


# ----------------------------------------------------------------------------- files

class Result(BaseModel):
    """One result file. ``KIND`` names it in messages, ``STAGE`` is the command that writes
    it again. Setting a declared field validates the value (a report re-rendered with new
    references stays a valid report)."""
    model_config = ConfigDict(extra="allow", validate_assignment=True)
    KIND: ClassVar[str] = "result"
    STAGE: ClassVar[str] = "pakd run"

    def __getitem__(self, key: str) -> Any:
        if key in type(self).model_fields:
            return getattr(self, key)
        extra = self.__pydantic_extra__ or {}
        if key in extra:
            return extra[key]
        raise KeyError(key)

    def __setitem__(self, key: str, value: Any) -> None:
        setattr(self, key, value)

    def __contains__(self, key: object) -> bool:
        return key in self.model_fields_set or key in (self.__pydantic_extra__ or {})

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default


class TeachersReport(Result):
    """RUN/teachers.json: members, the ensemble teacher and the baselines on the test part."""
    KIND: ClassVar[str] = "teachers report"
    STAGE: ClassVar[str] = "pakd ensemble"
    dataset: str
    split: dict[str, Any]
    threads: int
    members: dict[str, MemberRow]
    ensemble: EnsembleRow
    baselines: dict[str, MetricRow]
    origin_ensemble: Optional[EnsembleRow] = None
    rerank: Optional[dict[str, Any]] = None


class PakdExperiment(Result):
    """RUN/analysis_results/pakd_experiment.json: the sweep, its teacher and best student."""
    KIND: ClassVar[str] = "distillation sweep"
    STAGE: ClassVar[str] = "pakd distill"
    dataset: str
    teacher: ReferenceRow
    members: list[ReferenceRow]
    rows: list[SweepRow]
    best_student: dict[str, Any]
    targets: dict[str, Any]
    settings: dict[str, Any]
    student: dict[str, Any]
    bench: Optional[dict[str, Any]] = None
    threads: int
    teacher_valid: dict[str, Num]
    references: dict[str, dict[str, Num]]
    teacher_temperature: float
    curves: list[CurveEntry]
    criterion_check: Optional[dict[str, Any]] = None
    seconds: float
    budgets: Optional[dict[str, int]] = None          # absent before size budgets
    teacher_distribution: Optional[str] = None
    feature_variance_kept: Optional[float] = None


class FisherAnalysis(Result):
    """RUN/analysis_results/ensemble_fisher_analysis.json: per member its Fisher, damage
    checks and plan."""
    KIND: ClassVar[str] = "Fisher analysis"
    STAGE: ClassVar[str] = "pakd fisher"
    teacher: str
    dataset: str
    focus_tasks: list[str]
    fisher: list[str]
    criterion: str
    models: dict[str, dict[str, Any]]
    sigma2: dict[str, Num]
    timings: dict[str, StageTime]


class FisherExperiment(Result):
    """RUN/analysis_results/movielens_fisher_experiment.json: the record beside the
    analysis (data, split, settings, timings, per member a summary)."""
    KIND: ClassVar[str] = "Fisher experiment record"
    STAGE: ClassVar[str] = "pakd fisher"
    dataset: str
    seed: int
    threads: int
    data: dict[str, Any]
    split: dict[str, Any]
    settings: dict[str, Any]
    sigma2: dict[str, Num]
    timings: dict[str, StageTime]
    summary: dict[str, Any]


class RunTimings(Result):
    """RUN/timings.json: seconds per stage (one key each, and ``total``), each stage's
    peak resident memory and the environment the run ran with."""
    KIND: ClassVar[str] = "run timings"
    STAGE: ClassVar[str] = "pakd run"
    __pydantic_extra__: dict[str, float]     # stage name -> seconds
    total: float
    peak_rss_mb: dict[str, float] = {}
    peak_rss_per_stage: Optional[bool] = None
    environment: Optional[dict[str, Any]] = None

    def stage_seconds(self) -> dict[str, float]:
        """The seconds of each stage, in run order, then the total."""
        return {**(self.__pydantic_extra__ or {}), "total": self.total}


class StudentRecord(Result):
    """RUN/models/students/<stem>.row.json: a finished sweep student's row and curve, kept
    under the fingerprint of its inputs (--resume reuses it under the same one)."""
    KIND: ClassVar[str] = "finished sweep student"
    STAGE: ClassVar[str] = "pakd distill"
    fingerprint: str
    row: SweepRow
    curve: CurveEntry


class FisherPart(Result):
    """RUN/analysis_results/fisher_parts/<member>.json: one member's finished analysis,
    kept under the fingerprint of its inputs."""
    KIND: ClassVar[str] = "finished Fisher analysis part"
    STAGE: ClassVar[str] = "pakd fisher"
    fingerprint: str
    result: dict[str, Any]
    seconds: float


# ----------------------------------------------------------------------------- the pair

R = TypeVar("R", bound=Result)


def write_result(path: Path, obj: Result) -> Path:
    """Atomically write a result with the schema version this pakd writes. Keys never set
    are left out, so a result read and written again is the same file."""
    return write_json(path, {"schema_version": SCHEMA_VERSION,
                             **obj.model_dump(exclude_unset=True)})


def load_result(path: Path, kind: type[R]) -> R:
    """The result in ``path`` as ``kind``; a `PakdError` naming the file for a version this
    pakd does not read or a key that is missing or of the wrong type."""
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise PakdError(f"{path} is not a pakd {kind.KIND} (a JSON object was expected): "
                        f"run `{kind.STAGE}` again to write it")
    raw = dict(raw)
    version = raw.pop("schema_version", 1)     # files written before the field: version 1
    if version not in READS or isinstance(version, bool):
        from . import __version__
        raise PakdError(
            f"{path} has schema_version {version!r}, but pakd {__version__} reads "
            f"{kind.KIND} files of version {', '.join(map(str, READS))} only: upgrade pakd "
            f"(pip install -U pakd) to read it, or run `{kind.STAGE}` with this pakd to "
            "write it again")
    try:
        return kind.model_validate(raw)
    except ValidationError as e:
        raise PakdError(f"{path} is not a valid pakd {kind.KIND} (schema version {version}): "
                        + "; ".join(_problem(err) for err in e.errors()[:5])
                        + f"; run `{kind.STAGE}` again to write it (or restore it)") from None


def load_marker(path: Path, kind: type[R], fp: str) -> R | None:
    """A finished piece of work (``kind`` with a ``fingerprint``) kept under ``fp``, else
    None: missing, unreadable, from another pakd version, or made from other settings or
    teachers - any of which means the work is done again."""
    try:
        got = load_result(path, kind) if Path(path).is_file() else None
    except PakdError:
        return None
    return got if got is not None and got.fingerprint == fp else None


def _problem(err: dict) -> str:
    where = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p))
                    for i, p in enumerate(err["loc"]))
    if err["type"] == "missing":
        return f"key {where!r} is missing"
    return f"{where!r}: {err['msg'].lower()} (got {str(err.get('input'))[:40]!r})"


__all__ = ["SCHEMA_VERSION", "READS", "Result", "TeachersReport", "PakdExperiment",
           "FisherAnalysis", "FisherExperiment", "RunTimings", "SweepRow", "StudentRecord",
           "FisherPart", "load_result", "write_result", "load_marker"]
