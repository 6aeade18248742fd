"""A model ready to answer requests: the network plus what a request needs around it -
original user and item IDs, titles, each user's seen items, popular items for a fallback
and the accuracy the run measured for it.

`load_deployable` accepts the paths `pakd recommend` accepts (a saved student's stem,
``.safetensors`` or ``.json``), a run directory (its best student), a member
(``RUN/teachers/svd``) or the ensemble (``RUN/teachers/ensemble``).

A student written by `pakd update` carries more in its catalogue (`CATALOG_EXTRAS`): the
run it grew from (its split still gives the seen items, wherever the student is saved),
the ratings folded in since (seen too), the item fields' vocabularies, the lineage (which
update logs belong to it), which update-log records it holds, and how its new items were
placed (``new_items``: `pakd.deploy.live`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import PakdError
from ..limits import MAX_CATALOG_BYTES, read_input
from ..models import RecModel, load
from ..models.checks import read_config
from ..results import PakdExperiment, TeachersReport, load_result
from ..rundir import RunDir


@dataclass
class Deployable:
    model: RecModel
    name: str
    path: Path                       # the stem the model was loaded from
    user_ids: list
    item_ids: list
    titles: list[str]
    seen_indptr: np.ndarray          # CSR of each user's train and valid items
    seen_items: np.ndarray
    popular: np.ndarray              # item indices, most rated in train first
    run: RunDir | None = None
    metrics: dict = field(default_factory=dict)   # the run's test figures for this model
    size_bytes: int = 0
    seen_ratings: np.ndarray | None = None        # the rating of each seen item
    catalog: dict = field(default_factory=dict)   # `CATALOG_EXTRAS` of an updated student

    def __post_init__(self):
        self._users = {str(u): k for k, u in enumerate(self.user_ids)}
        self._items = {str(i): k for k, i in enumerate(self.item_ids)}

    @property
    def kind(self) -> str:
        return self.model.kind

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def user_index(self, raw) -> int | None:
        return self._users.get(str(raw).strip())

    def item_index(self, raw) -> int | None:
        return self._items.get(str(raw).strip())

    def seen(self, user: int) -> np.ndarray:
        return self.seen_items[self.seen_indptr[user]:self.seen_indptr[user + 1]]

    def seen_padded(self, users: np.ndarray) -> np.ndarray:
        """[len(users), S] int64 item indices to exclude, padded with -1 (at least one column:
        the graphs take a rectangle)."""
        rows = [self.seen(int(u)) for u in users]
        width = max([1] + [len(r) for r in rows])
        out = np.full((len(users), width), -1, dtype=np.int64)
        for k, r in enumerate(rows):
            out[k, :len(r)] = r
        return out

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "path": str(self.path),
                "params": int(self.model.n_params()), "size_bytes": int(self.size_bytes),
                "users": len(self.user_ids), "items": len(self.item_ids),
                "run": str(self.run.root) if self.run else None, "metrics": self.metrics}


# what a catalogue may hold beside IDs and titles (written by `pakd update`)
CATALOG_EXTRAS = ("fields", "run", "lineage", "updates", "added_ratings", "new_items")


def _stem(path: Path) -> Path:
    return path.with_suffix("") if path.suffix in (".safetensors", ".json") else path


def load_deployable(path: str | Path, *, run_dir: str | Path | None = None) -> Deployable:
    """The model at ``path`` with its catalogue and seen items (see the module docstring)."""
    p = Path(path)
    if RunDir.is_run(p):
        p = RunDir(p).best_student
    stem = _stem(p)
    cfg_path = stem.with_suffix(".json")
    if not cfg_path.is_file():
        raise PakdError(f"{path}: no model there ({cfg_path} not found); pass a saved model "
                        "(RUN/models/saved/best_student_model), a member (RUN/teachers/svd), "
                        "the ensemble (RUN/teachers/ensemble) or a run directory")
    rd = RunDir(run_dir) if run_dir else RunDir.of_model(stem)
    is_ensemble = read_config(cfg_path).get("kind") == "ensemble"
    if is_ensemble:
        if rd is None:
            raise PakdError(f"{cfg_path} is an ensemble: its members are found through its run "
                            "directory; keep it inside the run or pass --run")
        model = rd.load_ensemble()
        files = rd.teacher_files("ensemble")
    else:
        model, _ = load(stem)
        files = [RunDir.weights(stem)]
    user_ids, item_ids, titles, extras = _catalogue(stem, rd)
    if rd is None and extras.get("run") and RunDir.is_run(extras["run"]):
        rd = RunDir(extras["run"])
    if len(user_ids) != model.schema.n_users or len(item_ids) != model.schema.n_items:
        raise PakdError(f"{stem}: the model has {model.schema.n_users} users and "
                        f"{model.schema.n_items} items but its catalogue {len(user_ids)} and "
                        f"{len(item_ids)}; it belongs to another run (pass --run)")
    indptr, items, ratings, popular = _history(rd, user_ids, item_ids,
                                               extras.get("added_ratings"))
    return Deployable(model=model, name=stem.name, path=stem, user_ids=user_ids,
                      item_ids=item_ids, titles=titles, seen_indptr=indptr, seen_items=items,
                      popular=popular, run=rd, metrics=_run_metrics(rd, stem, is_ensemble),
                      size_bytes=sum(f.stat().st_size for f in files if f.is_file()),
                      seen_ratings=ratings, catalog=extras)


def _catalogue(stem: Path, rd: RunDir | None) -> tuple[list, list, list[str], dict]:
    """IDs, titles and `CATALOG_EXTRAS`: the catalogue file saved beside a student, else the
    run's encoding (teachers are saved without one)."""
    cat_path = RunDir.catalog_of(stem)
    if cat_path.is_file():
        return read_catalog(cat_path)
    if rd is None:
        raise PakdError(f"{cat_path} not found and {stem} is not inside a run directory: the "
                        "IDs and titles come from one of them (pass --run)")
    from ..config import build_config, load_run_config
    from ..data import load_encoded
    cfg = build_config(base=load_run_config(rd.config))
    cfg.quiet = True
    enc = load_encoded(cfg, rd)
    titles = enc.titles or [str(i) for i in enc.item_ids]
    return enc.user_ids.tolist(), enc.item_ids.tolist(), list(titles), {}


def read_catalog(path: Path) -> tuple[list, list, list[str], dict]:
    """(user IDs, item IDs, titles, extras) of a catalogue file, checked: lists of IDs
    (strings or integers), when present one title string per item, and the extras'
    shapes (`CATALOG_EXTRAS`)."""
    raw = read_input(path, limit=MAX_CATALOG_BYTES, what="catalogue file",
                     fix="restore the catalogue saved with the model, or distill it again")
    try:
        cat = json.loads(raw)
    except (ValueError, RecursionError):
        cat = None
    ok = isinstance(cat, dict) and all(
        isinstance(cat.get(k), list) and all(isinstance(x, (str, int)) and not isinstance(x, bool)
                                             for x in cat[k]) for k in ("user_ids", "item_ids"))
    titles = cat.get("titles") if ok else None
    if ok and titles is not None and not (isinstance(titles, list) and len(titles) == len(
            cat["item_ids"]) and all(isinstance(t, str) for t in titles)):
        ok = False
    extras = {k: cat[k] for k in CATALOG_EXTRAS if ok and cat.get(k) is not None}
    if ok and not _extras_ok(extras):
        ok = False
    if not ok:
        raise PakdError(f"{path} is not a catalogue pakd can read (a JSON object with lists "
                        "user_ids, item_ids and one title per item); restore the file saved "
                        "with the model, or distill it again")
    return (cat["user_ids"], cat["item_ids"], titles or [str(i) for i in cat["item_ids"]],
            extras)


def _extras_ok(extras: dict) -> bool:
    added = extras.get("added_ratings")
    if added is not None:
        if not (isinstance(added, dict) and all(isinstance(added.get(k), list)
                                                for k in ("user", "item", "rating"))
                and len(added["user"]) == len(added["item"]) == len(added["rating"])
                and all(isinstance(r, (int, float)) and not isinstance(r, bool)
                        for r in added["rating"])):
            return False
    new = extras.get("new_items")
    if new is not None:
        num = (int, float)
        if not (isinstance(new, dict) and isinstance(new.get("clock", 0), int)
                and isinstance(new.get("exposed", []), list)
                and all(isinstance(e, list) and len(e) == 2 and isinstance(e[1], int)
                        for e in new.get("exposed", []))
                and isinstance(new.get("table"), (int, type(None)))
                and isinstance(new.get("prior", []), list) and len(new.get("prior", [])) in (0, 3)
                and all(isinstance(x, num) and not isinstance(x, bool) and x > 0
                        for x in new.get("prior", []))):
            return False
    return (isinstance(extras.get("fields", {}), dict)
            and isinstance(extras.get("run", ""), str)
            and isinstance(extras.get("lineage", ""), str)
            and isinstance(extras.get("updates", {}), dict))


def _history(rd: RunDir | None, user_ids: list, item_ids: list, added: dict | None = None):
    """(indptr, items, ratings) of every user's train+valid ratings - and the ratings an
    update folded in (``added``, original IDs; they win over the split's) - and items by
    train popularity; only the added ones without a run."""
    n_users, n_items = len(user_ids), len(item_ids)
    uidx, iidx = pd.Index([str(x) for x in user_ids]), pd.Index([str(x) for x in item_ids])
    if added and len(added["user"]):
        au = uidx.get_indexer([str(x) for x in added["user"]])
        ai = iidx.get_indexer([str(x) for x in added["item"]])
        if (au < 0).any() or (ai < 0).any():
            raise PakdError("the catalogue's added_ratings name users or items it does not "
                            "list: the file was damaged or edited; run pakd update again")
        ar = np.asarray(added["rating"], np.float64)
    else:
        au = ai = np.zeros(0, np.int64)
        ar = np.zeros(0, np.float64)
    if rd is None or not rd.split_csv.is_file():
        return (*_csr(n_users, au, ai, ar), np.arange(n_items))
    try:
        df = pd.read_csv(rd.split_csv, usecols=["user", "item", "rating", "part"],
                         dtype={"user": str, "item": str, "rating": np.float64, "part": str},
                         engine="c")
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        raise PakdError(f"{rd.split_csv} is not a split pakd can read (columns user, item, "
                        "part); it was damaged or edited: make the split again with pakd data "
                        "split, or pass the --run the model was trained in") from None
    u = uidx.get_indexer(df["user"])
    i = iidx.get_indexer(df["item"])
    unknown = (u < 0) | (i < 0)
    if unknown.any():     # another data set's split: its seen items would be skipped silently
        r = int(np.flatnonzero(unknown)[0])
        what = (f"user {df['user'].iloc[r]}" if u[r] < 0 else f"item {df['item'].iloc[r]}")
        raise PakdError(f"{rd.split_csv} holds {int(unknown.sum()):,} ratings of users or items "
                        f"the model does not know (first: {what}, line {r + 2}): the model was "
                        f"not trained on this run's split; pass the --run it was trained in")
    keep = (df["part"] != "test").to_numpy()
    indptr, items, ratings = _csr(n_users, np.concatenate([u[keep], au]),
                                  np.concatenate([i[keep], ai]),
                                  np.concatenate([df["rating"].to_numpy()[keep], ar]))
    train = (df["part"] == "train").to_numpy()
    counts = np.bincount(i[train], minlength=n_items)
    return indptr, items, ratings, np.argsort(-counts, kind="stable")


def _csr(n_users: int, u: np.ndarray, i: np.ndarray, r: np.ndarray):
    """(indptr, items, ratings) by user then item; of a repeated (user, item) the last
    given is kept."""
    u, i = np.asarray(u, np.int64), np.asarray(i, np.int64)
    order = np.lexsort((np.arange(len(u)), i, u))
    u, i, r = u[order], i[order], np.asarray(r, np.float64)[order]
    last = np.ones(len(u), bool)
    last[:-1] = (u[1:] != u[:-1]) | (i[1:] != i[:-1])
    u, i, r = u[last], i[last], r[last]
    indptr = np.zeros(n_users + 1, np.int64)
    np.cumsum(np.bincount(u, minlength=n_users), out=indptr[1:])
    return indptr, i, r.astype(np.float32)


def _run_metrics(rd: RunDir | None, stem: Path, is_ensemble: bool) -> dict:
    """The test figures the run reported for this model, when it reported them."""
    keys = ("rmse", "mae", "auc", "ndcg@10", "recall@10")
    if rd is None:
        return {}
    row = None
    if stem == rd.best_student and rd.pakd_json.is_file():
        row = load_result(rd.pakd_json, PakdExperiment).best_student
    elif rd.teachers_json.is_file():
        t = load_result(rd.teachers_json, TeachersReport)
        row = t.ensemble if is_ensemble else t.members.get(stem.name)
    return {k: row[k] for k in keys if row and k in row}
