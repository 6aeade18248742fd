"""The run directory: every artefact path of a run, and its JSON reads and writes.

Every stage, the CLI, `pakd.bench` and `pakd recommend` find files through a `RunDir`, so
the layout is written down once::

    RUN/run.yaml                         resolved settings
    RUN/pakd.log                         debug log of every command on this run
    RUN/split.csv, split.json            the split (user,item,rating,timestamp,part) + summary
    RUN/teachers/<m>.safetensors|.json   a member's weights and config (+ test metrics)
    RUN/teachers/<m>.state.pt            its resumable training state
    RUN/teachers/<m>.scores.safetensors  its users x items ranking scores (cache)
    RUN/teachers/ensemble.json           the ensemble teacher (members, mixes, calibration)
    RUN/teachers/ensemble.users.safetensors  its per-user logit standardisation
    RUN/teachers.json|md                 member, ensemble and baseline metrics
    RUN/analysis_results/...             Fisher analysis and PAKD experiment (JSON + Markdown;
                                         fisher_parts/<m>.json: one member's finished analysis)
    RUN/models/students/<method>_r<NN>.* every student of the sweep (.row.json: finished)
    RUN/models/saved/best_student_model.*  the chosen student (+ .catalog.json: IDs, titles)
    RUN/plots/*.png                      figures
    RUN/summary.md, timings.json         the run in one table; seconds per stage
    RUN/report.html                      the run on one self-contained page
    RUN/benchmarks/peers.json            peers (benchmarks/peers.py) on the same split
    RUN/per_user/<model>.<part>.npz      per-user results (confidence intervals resample them)
    RUN/tune.db                          `pakd tune`'s Optuna study (SQLite, the default storage)
    RUN/analysis_results/tune_*          its Pareto front (JSON, Markdown, PNG), the chosen
                                         settings (tune_chosen.yaml) and --final's test report
    RUN/models/tuned/*                   --final's tuned student and the default-settings one
    RUN/.lock                            PID and host of the command using the run (if any)
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path

import numpy as np

from .atomic import atomic_write_bytes, atomic_write_text
from .data.splits import SPLIT_CSV, SPLIT_JSON
from .errors import PakdError


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


def write_json(path: Path, obj) -> Path:
    """Atomically write ``obj`` as indented JSON (numpy scalars and arrays allowed)."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")
    return Path(path)


def read_json(path: Path) -> dict:
    """A JSON file of the run; a damaged one (cut short, edited) is a `PakdError` naming it."""
    try:
        return json.loads(Path(path).read_bytes())
    except (ValueError, RecursionError) as e:
        raise PakdError(f"{path} is not valid JSON ({str(e)[:80]}): it was cut short or "
                        "edited; run the stage that writes it again (or restore it)") from None


def fingerprint(spec: dict, files: list[Path]) -> str:
    """MD5 of ``spec`` (settings, as JSON) and of each file's bytes: the key under which a
    finished piece of work (a Fisher part, a sweep student) is kept for --resume. Each file
    is read once, however often it is listed."""
    digests = {f.name: hashlib.md5(f.read_bytes()).hexdigest()   # by name: a moved run
               for f in dict.fromkeys(map(Path, files)) if f.is_file()}    # keeps its keys
    return hashlib.md5(json.dumps({"spec": spec, "files": digests}, sort_keys=True,
                                  default=_json_default).encode()).hexdigest()


# settings that decide what a run's artefacts are: a command that changes one of them on a
# run with a split would mix two experiments in one directory (where the data lives, the
# download cache and mirror do not change the data, so they may differ)
IDENTITY = ("seed", "data", "split")
_SAME_DATA = ("dir", "cache", "download", "base_url", "allow_insecure", "allow_unverified")


def identity_differences(old, new) -> list[str]:
    """``setting: old -> new`` for each identity setting two run configs disagree on."""
    out = []
    for key in IDENTITY:
        a, b = getattr(old, key), getattr(new, key)
        if key == "seed":
            if a != b:
                out.append(f"seed: {a} -> {b}")
            continue
        da, db = a.model_dump(), b.model_dump()
        for k in da:
            if k not in _SAME_DATA and da[k] != db[k]:
                out.append(f"{key}.{k}: {da[k]!r} -> {db[k]!r}")
    return out


class RunLock:
    """An exclusive claim on a run directory: RUN/.lock holds the PID and host of the
    command using it. A lock whose process is gone (same host) is stale and taken over."""

    def __init__(self, path: Path):
        self.path = path
        self.held = False

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and not self._stale(owner):
                    since = time.strftime("%Y-%m-%d %H:%M:%S",
                                          time.localtime(owner.get("since", 0)))
                    raise PakdError(
                        f"{self.path.parent} is in use by process {owner.get('pid')} on "
                        f"{owner.get('host')} (since {since}): wait for it to finish, or use "
                        f"another --run; if that process is gone, delete {self.path}")
                self.path.unlink(missing_ok=True)   # stale (or unreadable): take it over
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise PakdError(f"could not lock {self.path.parent}: delete {self.path} if no pakd "
                        "command uses this run")

    def _owner(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _stale(owner: dict) -> bool:
        if owner.get("host") != socket.gethostname():
            return False                 # cannot see another machine's processes
        pid = int(owner.get("pid", -1))
        if pid == os.getpid():
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class RunDir:
    """Paths of one run directory (nothing is created until a stage writes)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    def __str__(self) -> str:
        return str(self.root)

    @staticmethod
    def is_run(path: str | Path) -> bool:
        """Whether ``path`` is a run directory (it holds a split)."""
        return (Path(path) / "split.csv").is_file()

    @classmethod
    def of_model(cls, model_path: str | Path) -> "RunDir | None":
        """The run a saved model belongs to (``RUN/models/<kind>/<stem>``), if it is one."""
        stem = Path(model_path)
        for parent in stem.parents:
            if cls.is_run(parent):
                return cls(parent)
        return None

    # --- settings, log, split
    @property
    def config(self) -> Path:
        return self.root / "run.yaml"

    def lock(self) -> RunLock:
        """The run's lock (`RunLock`), not yet acquired."""
        return RunLock(self.root / ".lock")

    def set_aside(self) -> Path:
        """Move this run's directory to ``RUN.replaced-<time>`` (nothing is deleted) so a
        fresh run can start at the same path; returns where the old one went."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        dest = self.root.with_name(f"{self.root.name}.replaced-{stamp}")
        n = 1
        while dest.exists():
            dest = self.root.with_name(f"{self.root.name}.replaced-{stamp}-{n}")
            n += 1
        os.replace(self.root, dest)
        return dest

    @property
    def log(self) -> Path:
        return self.root / "pakd.log"

    @property
    def split_csv(self) -> Path:
        return self.root / SPLIT_CSV

    @property
    def split_json(self) -> Path:
        return self.root / SPLIT_JSON

    def split_summary(self) -> dict:
        return read_json(self.split_json) if self.split_json.is_file() else {}

    # --- teachers
    @property
    def teachers(self) -> Path:
        return self.root / "teachers"

    def member(self, name: str) -> Path:
        """Stem of a member's saved model (``.safetensors`` + ``.json``)."""
        return self.teachers / name

    def member_state(self, name: str) -> Path:
        return self.teachers / f"{name}.state.pt"

    def member_scores(self, name: str) -> Path:
        return self.teachers / f"{name}.scores.safetensors"

    def member_fingerprint(self, name: str) -> str:
        """MD5 of a member's weights: the key of its score cache."""
        return hashlib.md5(self.weights(self.member(name)).read_bytes()).hexdigest()

    @property
    def ensemble(self) -> Path:
        return self.teachers / "ensemble.json"

    @property
    def ensemble_stats(self) -> Path:
        return self.teachers / "ensemble.users.safetensors"

    @property
    def teachers_json(self) -> Path:
        return self.root / "teachers.json"

    @property
    def teachers_md(self) -> Path:
        return self.root / "teachers.md"

    # --- analysis results
    @property
    def analysis(self) -> Path:
        return self.root / "analysis_results"

    @property
    def fisher_json(self) -> Path:
        return self.analysis / "ensemble_fisher_analysis.json"

    @property
    def fisher_md(self) -> Path:
        return self.analysis / "ensemble_fisher_analysis_summary.md"

    def fisher_part(self, member: str) -> Path:
        """One member's finished Fisher analysis (with the fingerprint of its inputs), kept so
        --resume does not redo it."""
        return self.analysis / "fisher_parts" / f"{member}.json"

    @property
    def fisher_experiment_json(self) -> Path:
        return self.analysis / "movielens_fisher_experiment.json"

    @property
    def pakd_json(self) -> Path:
        return self.analysis / "pakd_experiment.json"

    @property
    def pakd_md(self) -> Path:
        return self.analysis / "pakd_experiment_summary.md"

    @property
    def summary_md(self) -> Path:
        return self.root / "summary.md"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    # --- per-user results (what confidence intervals resample)
    def per_user(self, name: str, part: str) -> Path:
        return self.root / "per_user" / f"{name}.{part}.npz"

    def save_per_user(self, name: str, part: str, payload: dict) -> Path:
        """A model's per-user and per-rating arrays on a split part, as plain numpy arrays."""
        import io
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in payload.items()})
        return self.write_bytes(self.per_user(name, part), buf.getvalue())

    def load_per_user(self, name: str, part: str) -> dict:
        path = self.per_user(name, part)
        if not path.is_file():
            raise PakdError(f"{path} not found: this run was evaluated before per-user results "
                            f"were kept; re-run the stage that evaluates {name}")
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    @property
    def peers_json(self) -> Path:
        """benchmarks/peers.py's results on this run's split."""
        return self.root / "benchmarks" / "peers.json"

    @property
    def timings_json(self) -> Path:
        return self.root / "timings.json"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    def plot(self, name: str) -> Path:
        return self.plots / f"{name}.png"

    # --- students
    @property
    def students(self) -> Path:
        return self.root / "models" / "students"

    def student(self, method: str, budget: str) -> Path:
        """A sweep student's stem: its method and budget label (3% -> 3pct, 0.4 -> r0_4)."""
        slug = budget.replace("%", "pct")
        if "." in slug or slug.startswith("0"):
            slug = "r" + slug.replace(".", "_")
        return self.students / f"{method}_{slug}"

    @staticmethod
    def row_of(stem: str | Path) -> Path:
        """A sweep student's finished row (metrics, curve, the inputs' fingerprint): written
        after its weights, so its presence marks the student complete."""
        return Path(stem).with_suffix(".row.json")

    @property
    def best_student(self) -> Path:
        return self.root / "models" / "saved" / "best_student_model"

    @staticmethod
    def weights(stem: str | Path) -> Path:
        """The weights file of a saved model's stem (`pakd.models.save` writes it)."""
        return Path(stem).with_suffix(".safetensors")

    @staticmethod
    def catalog_of(stem: str | Path) -> Path:
        """The IDs-and-titles file saved beside a deployable model."""
        stem = Path(stem)
        if stem.suffix in (".safetensors", ".json"):
            stem = stem.with_suffix("")
        return stem.with_suffix(".catalog.json")

    # --- tuning (`pakd tune`)
    @property
    def tune_db(self) -> Path:
        return self.root / "tune.db"

    @property
    def tune_front_json(self) -> Path:
        return self.analysis / "tune_front.json"

    @property
    def tune_front_md(self) -> Path:
        return self.analysis / "tune_front.md"

    @property
    def tune_front_png(self) -> Path:
        return self.analysis / "tune_front.png"

    @property
    def tune_chosen(self) -> Path:
        """The chosen trial's settings, a YAML file `pakd distill --config` takes."""
        return self.analysis / "tune_chosen.yaml"

    @property
    def tune_final_json(self) -> Path:
        return self.analysis / "tune_final.json"

    @property
    def tune_final_md(self) -> Path:
        return self.analysis / "tune_final.md"

    def tuned(self, name: str) -> Path:
        """Stem of a student `pakd tune --final` trains (tuned_student, default_student)."""
        return self.root / "models" / "tuned" / name

    # --- models
    def has_member(self, name: str) -> bool:
        return self.weights(self.member(name)).is_file()

    def load_member(self, name: str):
        """(model, config) of a trained member."""
        from .models import load
        if not self.weights(self.member(name)).is_file():
            raise PakdError(f"teacher {name} not found in {self.teachers}; "
                            f"run `pakd train --run {self.root} --models {name}` first")
        return load(self.member(name))

    def load_ensemble(self):
        from .models.ensemble import Ensemble
        if not self.ensemble.is_file():
            raise PakdError(f"{self.ensemble} not found; run `pakd ensemble --run {self.root}` "
                            "first")
        arch = read_json(self.ensemble)
        stats = None
        if arch.get("standardise") == "user":
            if not self.ensemble_stats.is_file():
                raise PakdError(f"{self.ensemble_stats} not found (the ensemble's per-user "
                                f"standardisation); run `pakd ensemble --run {self.root}`")
            from safetensors.torch import load_file
            stats = load_file(str(self.ensemble_stats))
        return Ensemble.from_arch(arch, {n: self.load_member(n)[0] for n in arch["members"]},
                                  stats)

    def save_ensemble(self, ens) -> Path:
        """ensemble.json, and beside it ensemble.users.safetensors when it is standardised per
        user (written first: a config never names statistics that are not there)."""
        if ens.standardise == "user":
            from safetensors.torch import save
            self.write_bytes(self.ensemble_stats, save(
                {k: v.contiguous() for k, v in ens.user_stats().items()}))
        return write_json(self.ensemble, {"kind": "ensemble", **ens.arch()})

    def load_teacher(self, name: str):
        """The ensemble or one member, by name."""
        return self.load_ensemble() if name == "ensemble" else self.load_member(name)[0]

    def teacher_files(self, name: str) -> list[Path]:
        """The weight files a teacher is made of (its size on disk)."""
        if name != "ensemble":
            return [self.weights(self.member(name))]
        arch = read_json(self.ensemble)
        used = {n for key in ("rating_mix", "ranking_mix", "rating_weights", "ranking_weights")
                for n in arch.get(key, {})}
        stats = [self.ensemble_stats] if arch.get("standardise") == "user" else []
        return [self.weights(self.member(n)) for n in arch["members"] if n in used] + stats

    def write_text(self, path: Path, text: str) -> Path:
        atomic_write_text(path, text)
        return path

    def write_bytes(self, path: Path, data: bytes) -> Path:
        atomic_write_bytes(path, data)
        return path
