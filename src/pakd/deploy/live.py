"""A served student that takes updates: new users, new ratings and new items, each in
effect for the next request, without training.

`LiveState` wraps a `Deployable` (the saved student, its IDs, titles and each user's seen
ratings) and answers for it the way the service asks a deployable (IDs, seen items, the
graphs), plus:

- ``check(record)``: an update record (`pakd.deploy.updates`) checked against the model -
  known items, the rating scale, a new item's side fields - and normalised; refused with
  an `UpdateError` (and its HTTP status) before anything is written or changed;
- ``apply(record)``: the record in effect. IDs only ever grow (a new user or item is
  appended); a user's ratings are their train and valid ratings plus every update (the
  latest rating of a pair wins), and their vectors are rebuilt from exactly those
  (`pakd.deploy.foldin`); every rated item joins their seen items, so ``/recommend`` never
  lists it;
- ``saved()``: the model and catalogue of an ordinary student holding every update (what
  `pakd update` writes).

New items (a fold that `places_items`: the tower student): each keeps the clock - the
count of distinct (user, item) pairs rated since training - at which it was added (its
exposure is the pairs rated since) and its first raters; after every ratings record the
new items' ranking biases follow their counts and exposure (`TowerFold.new_item_bias`),
and a new item that gains a rater (one of its first `FIRST_RATINGS`) is placed again by
its raters (`TowerFold.item_from_raters`), every one of whom is then rebuilt from the
moved item - so a user's vectors stay exactly those of a tower built from their ratings. The clock, the
exposures and the prior go into the saved student's catalogue (``new_items``) and a
student grown by `pakd update` carries on from them.

With ``vectors=False`` only the bookkeeping is done (`pakd update` on a student whose
new items need no vectors until it saves: ``vectors=None`` chooses). `replay` applies a
log's records to a state.

`Updater` is the service's writer: it owns the `LiveState` the service answers from and
the `UpdateLog` behind it. An update (`Updater.submit`) is checked against the model first
(refused with its status, nothing written), then queued; one commit task writes every
queued record in one append and one fsync (group commit, in a worker thread, so the event
loop keeps answering reads while the disk works), then applies them in order and only then
answers each request. An answer therefore means: on disk, and in effect for the next
``/recommend``.

`Updater.reload` loads the student saved at the model path again (in a worker thread;
requests keep being answered by the current one), replays the log onto it, and - holding
the commit lock, so no update slips between - replays what arrived meanwhile and swaps it
in: no request is dropped or answered by a half-made state. A student grown from this log
by `pakd update --log` holds its first records already (its catalogue says how many): only
the rest are replayed.
"""
from __future__ import annotations

import asyncio
import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import PakdError
from ..limits import short
from ..runtime import log
from .deployable import Deployable
from .features import ItemFields
from .foldin import FIRST_RATINGS, fold_for
from .graphs import TorchGraphs
from .updatelog import UpdateLog, lineage
from .updates import UpdateError


class LiveState:
    def __init__(self, dep: Deployable, fields: ItemFields | None, *, k: int = 100,
                 vectors: bool | None = True):
        self.dep, self.fields = dep, fields
        self.model = dep.model
        self.fold = fold_for(dep.model)
        if vectors is None:           # the placement of new items follows the order of updates
            vectors = self.fold.places_items
        self.user_ids, self.item_ids = list(dep.user_ids), list(dep.item_ids)
        self.titles = list(dep.titles)
        self._users = {str(u): n for n, u in enumerate(self.user_ids)}
        self._items = {str(i): n for n, i in enumerate(self.item_ids)}
        self._int_users = all(isinstance(u, int) for u in self.user_ids[:1000])
        self._int_items = all(isinstance(i, int) for i in self.item_ids[:1000])
        self.n_base_users, self.n_base_items = len(self.user_ids), len(self.item_ids)
        self.live: dict[int, dict[int, float]] = {}       # user -> item -> latest rating
        self.new_tokens: list[dict[str, list[int]]] = []  # the new items' tokens, in order
        self.records = 0                                  # records applied
        self.lineage = dep.catalog.get("lineage") or lineage(dep.user_ids, dep.item_ids)
        s = dep.model.schema
        self.scale = (float(s.rating_min), float(s.rating_max))
        hist = self.fold.base_history()
        if hist is None:              # a model that keeps no ratings: the run's stand in
            lens = np.diff(dep.seen_indptr)
            hist = (torch.from_numpy(np.repeat(np.arange(len(lens)), lens)),
                    torch.from_numpy(dep.seen_items), torch.from_numpy(
                        dep.seen_ratings if dep.seen_ratings is not None
                        else np.zeros(len(dep.seen_items), np.float32)))
        u, i, r = hist
        self._hist_indptr = np.zeros(self.n_base_users + 1, np.int64)
        np.cumsum(np.bincount(u.numpy(), minlength=self.n_base_users), out=self._hist_indptr[1:])
        order = np.argsort(u.numpy(), kind="stable")
        self._hist_items, self._hist_ratings = i.numpy()[order], r.numpy()[order].astype(np.float32)
        self.n_rated = np.diff(self._hist_indptr)         # ratings per user (the activity)
        self.counts = self.fold.base_counts()
        self.clock = 0                   # distinct (user, item) pairs rated since training
        self.exposed: dict[int, int] = {}        # new item -> the clock when it was added
        self.raters: dict[int, list[int]] = {}   # new item -> its raters, while it has few
        self._exposed_t = None
        grown = dep.catalog.get("new_items")
        if grown and self.fold.places_items:
            self._resume(grown)
        self.rows = self.fold.rows() if vectors else None
        self.graphs = TorchGraphs(self.rows, k) if vectors else None

    def _resume(self, grown: dict) -> None:
        """A student grown by `pakd update`: its new items' exposure and the clock."""
        self.fold.resume(grown)
        self.clock = int(grown.get("clock", 0))
        for item, at in grown.get("exposed", []):
            i = self.item_index(item)
            if i is not None:
                self.exposed[i] = int(at)
        hu, hi = np.repeat(np.arange(self.n_base_users), self.n_rated), self._hist_items
        for i in self.exposed:
            if float(self.counts[i]) < FIRST_RATINGS:
                self.raters[i] = hu[hi == i].tolist()

    # ------------------------------------------------------------------ what the service reads
    @property
    def name(self) -> str:
        return self.dep.name

    @property
    def kind(self) -> str:
        return self.dep.kind

    @property
    def path(self):
        return self.dep.path

    @property
    def size_bytes(self) -> int:
        return self.dep.size_bytes

    @property
    def metrics(self) -> dict:
        return self.dep.metrics

    @property
    def popular(self) -> np.ndarray:
        return self.dep.popular

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def user_index(self, raw) -> int | None:
        return self._users.get(str(raw).strip())

    def item_index(self, raw) -> int | None:
        return self._items.get(str(raw).strip())

    def seen(self, user: int) -> np.ndarray:
        base = (self.dep.seen(user) if user < self.n_base_users else np.zeros(0, np.int64))
        extra = self.live.get(user)
        if not extra:
            return base
        return np.union1d(base, np.fromiter(extra, np.int64, len(extra)))

    def seen_padded(self, users: np.ndarray) -> np.ndarray:
        rows = [self.seen(int(u)) for u in users]
        out = np.full((len(users), max([1] + [len(r) for r in rows])), -1, dtype=np.int64)
        for k, r in enumerate(rows):
            out[k, :len(r)] = r
        return out

    def ratings_of(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """(items, ratings) the user has given: the seen ones of the split with their
        ratings, then every update (the latest rating of a pair)."""
        if user < self.n_base_users:
            a, b = self.dep.seen_indptr[user], self.dep.seen_indptr[user + 1]
            items = self.dep.seen_items[a:b]
            ratings = (self.dep.seen_ratings[a:b] if self.dep.seen_ratings is not None
                       else np.full(b - a, np.nan, np.float32))
        else:
            items, ratings = np.zeros(0, np.int64), np.zeros(0, np.float32)
        return _merge(items, ratings, self.live.get(user))

    def _fold_ratings(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """The ratings the user's vectors are built from: the model's own (train) history,
        or the run's for a model that keeps none, with every update on top."""
        if user < self.n_base_users:
            a, b = self._hist_indptr[user], self._hist_indptr[user + 1]
            items, ratings = self._hist_items[a:b], self._hist_ratings[a:b]
        else:
            items, ratings = np.zeros(0, np.int64), np.zeros(0, np.float32)
        return _merge(items, ratings, self.live.get(user))

    # ------------------------------------------------------------------ updates
    def _new_id(self, raw, ints: bool):
        text = str(raw).strip()
        if ints and text.lstrip("-").isdigit() and str(int(text)) == text:
            return int(text)
        return text

    def check(self, record: dict, *, replay: bool = False) -> dict | None:
        """``record`` checked against the model and normalised (IDs as the catalogue holds
        them, ratings deduplicated: the latest of a pair), or an `UpdateError`. In a replay,
        an item that exists already is skipped (None): a student grown by `pakd update`
        holds the log's items."""
        kind = record.get("type")
        if kind == "ratings":
            lo, hi = self.scale
            latest: dict[str, list] = {}
            for item, rating in record["ratings"]:
                i = self.item_index(item)
                if i is None:
                    raise UpdateError(
                        f"item {short(item)} is not in the catalogue and has no side fields "
                        "here: add it first (POST /items, or pakd update --items) with its "
                        "side fields", 404)
                if not lo <= float(rating) <= hi:
                    raise UpdateError(f"rating {rating:g} of item {short(item)} is outside the "
                                      f"model's scale {lo:g}-{hi:g}")
                latest.pop(str(i), None)
                latest[str(i)] = [self.item_ids[i], float(rating)]
            user = record["user"]
            u = self.user_index(user)
            user = self.user_ids[u] if u is not None else self._new_id(user, self._int_users)
            return {"type": "ratings", "user": user, "ratings": list(latest.values())}
        if kind == "item":
            item = record["item"]
            if self.item_index(item) is not None:
                if replay:
                    return None
                raise UpdateError(f"item {short(item)} is already in the catalogue; its side "
                                  "fields stay as they are", 409)
            if self.fields is None:
                raise UpdateError("this model has no item side fields: a new item would have "
                                  "no vector (only students with side fields take new items)")
            tokens, unknown = self.fields.tokens(record.get("features") or {},
                                                 what=f"item {short(item)}")
            if not tokens:
                raise UpdateError(
                    f"item {short(item)}: none of its features is known to the model"
                    f"{' (unknown: ' + ', '.join(unknown[:8]) + ')' if unknown else ''}; "
                    f"give at least one value of {', '.join(self.fields.names)} from the "
                    "training data")
            return {"type": "item", "item": self._new_id(item, self._int_items),
                    "title": record.get("title") or str(item),
                    "features": record.get("features") or {}, "tokens": tokens,
                    "unknown": unknown}
        raise UpdateError(f"unknown update record type {short(kind)}")

    @torch.no_grad()
    def apply(self, rec: dict) -> None:
        """Put a checked record (`check`) in effect."""
        self.records += 1
        if rec["type"] == "item":
            self._add_item(rec)
            return
        u = self.user_index(rec["user"])
        if u is None:
            u = len(self.user_ids)
            self.user_ids.append(rec["user"])
            self._users[str(rec["user"])] = u
            self.n_rated = np.append(self.n_rated, 0)
            if self.rows is not None:
                self.fold.add_users(len(self.user_ids))
                self.rows.resize(len(self.user_ids), len(self.item_ids))
        mine = self.live.setdefault(u, {})
        new_pairs = []
        for item, rating in rec["ratings"]:
            i = self._items[str(item)]
            if i not in mine:
                new_pairs.append(i)
            mine[i] = float(rating)
        self.clock += len(new_pairs)
        placed = []
        for i in new_pairs:
            if i in self.raters:
                self.raters[i].append(u)
                placed.append(i)
        if new_pairs and self.counts is not None:
            idx = torch.tensor(new_pairs, dtype=torch.long)
            self.counts.index_add_(0, idx, torch.ones(len(idx), dtype=self.counts.dtype))
            if self.rows is not None:
                c = self.fold.rated(idx, self.counts[idx])
                self.rows.item_rank_bias[idx] = c
        if self.rows is not None:
            items, ratings = self._fold_ratings(u)
            self.n_rated[u] = len(items)
            users = torch.tensor([u])
            p, pr, b = self.fold.users(users, torch.zeros(len(items), dtype=torch.long),
                                       torch.from_numpy(items), torch.from_numpy(ratings))
            self.rows.set_users(users, p, pr, b)
            for i in placed:
                self._place(i)
            if self.exposed:
                new, at = self._exposed_tensors()
                self.rows.item_rank_bias[new] = self.fold.new_item_bias(
                    new, self.counts[new], self.clock - at)
        for i in placed:
            if float(self.counts[i]) >= FIRST_RATINGS:
                del self.raters[i]                     # placed for good

    def _exposed_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(new items, the clock when each was added), kept until an item is added."""
        if self._exposed_t is None or len(self._exposed_t[0]) != len(self.exposed):
            self._exposed_t = (torch.tensor(list(self.exposed), dtype=torch.long),
                               torch.tensor(list(self.exposed.values()), dtype=torch.float64))
        return self._exposed_t

    def _refold(self, users: list[int], theirs=None) -> None:
        """Rebuild ``users``' vectors from exactly their ratings (`_fold_ratings`; or
        ``theirs``, the `_ratings_of` them already read)."""
        pos, items, ratings = theirs if theirs is not None else self._ratings_of(users)
        idx = torch.tensor(users, dtype=torch.long)
        p, pr, b = self.fold.users(idx, pos, items, ratings)
        self.rows.set_users(idx, p, pr, b)

    def _ratings_of(self, users: list[int]):
        """(position in ``users``, item, rating) of every rating of ``users``."""
        pos, items, ratings = [], [], []
        for k, user in enumerate(users):
            it, ra = self._fold_ratings(user)
            pos.append(np.full(len(it), k))
            items.append(it)
            ratings.append(ra)
        return (torch.from_numpy(np.concatenate(pos)).long(),
                torch.from_numpy(np.concatenate(items)).long(),
                torch.from_numpy(np.concatenate(ratings)).float())

    def _place(self, i: int) -> None:
        """New item ``i`` placed again by its raters (`TowerFold.item_from_raters`), and
        they rebuilt from it."""
        raters = self.raters[i]
        theirs = pos, items, ratings = self._ratings_of(raters)
        other = items != i
        n = len(self.user_ids)
        k, kr, b = self.fold.item_from_raters(
            i, torch.tensor(raters, dtype=torch.long), pos[other], items[other],
            ratings[other], self.rows.user_rank[:n], torch.from_numpy(self.n_rated[:n]))
        self.rows.item_rank[i], self.rows.item_rate[i], self.rows.item_bias[i] = k, kr, b
        self._refold(raters, theirs)

    def _add_item(self, rec: dict) -> None:
        i = len(self.item_ids)
        self.item_ids.append(rec["item"])
        self.titles.append(rec["title"])
        self._items[str(rec["item"])] = i
        self.new_tokens.append(rec["tokens"])
        if self.counts is not None:
            self.counts = torch.cat([self.counts, torch.zeros(1, dtype=self.counts.dtype)])
        if self.fold.places_items:
            self.exposed[i] = self.clock
            self.raters[i] = []
        if self.rows is not None:
            k, kr, b, c = self.fold.add_items(self._token_tensors([rec["tokens"]]), 1)
            self.rows.resize(len(self.user_ids), len(self.item_ids))
            if self.fold.places_items:
                idx = torch.tensor([i])
                c = self.fold.new_item_bias(idx, self.counts[idx],
                                            torch.zeros(1, dtype=torch.float64))
            self.rows.set_items(torch.tensor([i]), k, kr, b, c)

    def _token_tensors(self, rows: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        out = {}
        for name, spec in (self.fields.specs.items() if self.fields else []):
            t = torch.zeros(len(rows), spec.max_len, dtype=torch.long)
            for n, r in enumerate(rows):
                toks = r.get(name, [])
                t[n, :len(toks)] = torch.tensor(toks, dtype=torch.long)
            out[name] = t
        return out

    # ------------------------------------------------------------------ an ordinary student
    def live_ratings(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(user, item, rating) of every update, the latest of each pair, by user."""
        u, i, r = [], [], []
        for user in sorted(self.live):
            for item, rating in sorted(self.live[user].items()):
                u.append(user)
                i.append(item)
                r.append(rating)
        return (torch.tensor(u, dtype=torch.long), torch.tensor(i, dtype=torch.long),
                torch.tensor(r, dtype=torch.float32))

    def saved(self, updates: dict) -> tuple:
        """(model, catalogue) of a student holding every update: the model of the same kind,
        the IDs grown, the added ratings and vocabularies recorded (`CATALOG_EXTRAS`)."""
        live = self.live_ratings()

        def ratings_of(users: torch.Tensor):
            return self._ratings_of(users.tolist())

        model = self.fold.saved(live, n_users=len(self.user_ids), n_items=len(self.item_ids),
                                item_tokens=self._token_tensors(self.new_tokens),
                                ratings_of=ratings_of, rows=self.rows)
        old = self.dep.catalog.get("added_ratings") or {"user": [], "item": [], "rating": []}
        run = self.dep.run.root.resolve() if self.dep.run is not None else None
        catalog = {"user_ids": self.user_ids, "item_ids": self.item_ids, "titles": self.titles,
                   "lineage": self.lineage,
                   "added_ratings": {
                       "user": old["user"] + [self.user_ids[x] for x in live[0].tolist()],
                       "item": old["item"] + [self.item_ids[x] for x in live[1].tolist()],
                       "rating": old["rating"] + [float(x) for x in live[2].tolist()]},
                   "updates": updates}
        if self.exposed:
            catalog["new_items"] = {**self.fold.record(), "clock": self.clock, "exposed": [
                [self.item_ids[i], at] for i, at in self.exposed.items()]}
        if run is not None:
            catalog["run"] = str(run)
        if self.fields is not None:
            catalog["fields"] = self.fields.to_json()
        return model, catalog


def _merge(items: np.ndarray, ratings: np.ndarray, live: dict | None):
    """``items``/``ratings`` with the ``live`` ratings on top (a live pair replaces a
    stored one)."""
    if not live:
        return np.asarray(items, np.int64), np.asarray(ratings, np.float32)
    li = np.fromiter(live.keys(), np.int64, len(live))
    lr = np.fromiter(live.values(), np.float32, len(live))
    if len(li) <= 8:              # a few live ratings (the common case): cheaper than isin
        keep = np.ones(len(items), bool)
        for i in li:
            keep &= items != i
    else:
        keep = ~np.isin(items, li)
    return (np.concatenate([np.asarray(items, np.int64)[keep], li]),
            np.concatenate([np.asarray(ratings, np.float32)[keep], lr]))


# ----------------------------------------------------------------------------- the writer

LOG_FIELDS = ("type", "user", "ratings", "item", "title", "features")


def model_version(path: Path) -> str:
    """A short fingerprint of a saved student's weights and catalogue (what /metrics and
    /metadata call its version)."""
    h = hashlib.sha256()
    for suffix in (".safetensors", ".catalog.json"):
        f = Path(path).with_suffix(suffix)
        if f.is_file():
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:12]


def replay(state: LiveState, records: list[dict], *, log_id: str) -> int:
    """Apply ``records`` (a log's, in order) to ``state``, skipping those the student
    already holds (`pakd update --log` records how many of which log); the number applied.
    A record the model refuses stops the replay with its position."""
    done = state.dep.catalog.get("updates", {})
    skip = int(done.get("records", 0)) if done.get("log") == log_id else 0
    applied = 0
    for n, rec in enumerate(records[skip:], start=skip + 1):
        try:
            checked = state.check(rec, replay=True)
        except (UpdateError, PakdError, KeyError, TypeError, ValueError) as e:
            raise PakdError(f"update-log record {n} cannot be applied to {state.name}: {e}. "
                            "Fix: serve the model the log was written for, or move the log "
                            "aside") from None
        if checked is not None:
            state.apply(checked)
            applied += 1
    return applied


class Updater:
    """Live updates and reloads for one service (see the module docstring). ``load``
    builds a fresh `LiveState` from the model path (for reloads)."""

    def __init__(self, state: LiveState, updates: UpdateLog, load: Callable[[], LiveState],
                 *, on_swap: Callable[[LiveState], None] | None = None):
        self.state, self.log, self.load = state, updates, load
        self.on_swap = on_swap
        self.generation = 1
        self.version = model_version(state.path)
        self.loaded_at = time.time()
        self._pending: list[tuple[dict, dict, asyncio.Future]] = []
        self._pending_items: set[str] = set()
        self._committer: asyncio.Task | str | None = None    # "inline": a request commits
        self._lock: asyncio.Lock | None = None
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pakd-log")
        self._reloading = False
        self.seq = len(updates.records)

    def close(self) -> None:
        self._io.shutdown(wait=True)
        self.log.close()

    def _lock_(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def submit(self, record: dict) -> dict:
        """Check, log (fsync), apply; the checked record once it is in effect. With no
        commit under way this request commits the queue itself: a commit task of its own
        would cost two more turns of the event loop (start it, be woken by it), each behind
        every queued read under load. What queues meanwhile is committed by a task."""
        checked = self.state.check(record)
        if checked["type"] == "item":
            key = str(checked["item"])
            if key in self._pending_items:
                raise UpdateError(f"item {key} is being added by another request", 409)
            self._pending_items.add(key)
        entry = {k: checked[k] for k in LOG_FIELDS if k in checked}
        entry["t"] = round(time.time(), 3)
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((entry, checked, fut))
        if self._committer is None:
            self._committer = "inline"
            try:
                cancelled = await self._commit_batch()
            finally:
                self._committer = None
                if self._pending:
                    self._committer = asyncio.ensure_future(self._commit())
            if cancelled:
                raise asyncio.CancelledError
        return await fut

    async def _commit(self) -> None:
        """The commit task: batches until the queue is empty."""
        try:
            while self._pending:
                await self._commit_batch()
        finally:
            self._committer = None

    async def _commit_batch(self) -> bool:
        """Every queued record in one append and one fsync (in the log's thread, so the
        event loop keeps answering reads while the disk works), then applied in order, each
        request answered after its own; True when the calling task was cancelled meanwhile
        - the batch is finished all the same (its records may be on disk)."""
        batch, self._pending = self._pending, []
        cancelled = False
        async with self._lock_():
            for entry, _, _ in batch:
                self.seq += 1
                entry["seq"] = self.seq
            written = self._io.submit(self.log.append, [e for e, _, _ in batch])
            while not written.done():
                try:
                    await asyncio.wrap_future(written)
                except asyncio.CancelledError:
                    cancelled = True
                except Exception:                   # noqa: BLE001 - read from written below
                    break
            failed = written.exception()
            if failed is not None:
                self.seq -= len(batch)
                for entry, checked, fut in batch:
                    self._pending_items.discard(str(checked.get("item")))
                    if not fut.done():
                        fut.set_exception(UpdateError(
                            f"the update log could not be written "
                            f"({getattr(failed, 'strerror', None) or failed}); nothing was "
                            "changed: try again later", 503))
                return cancelled
            for entry, checked, fut in batch:
                self._apply_logged(entry, checked, fut)
        return cancelled

    def _apply_logged(self, entry: dict, checked: dict, fut: asyncio.Future) -> None:
        self._pending_items.discard(str(checked.get("item")))
        try:
            if checked["type"] == "item" and self.state.item_index(checked["item"]) is not None:
                pass                                 # added meanwhile by a replay: nothing to do
            else:
                self.state.apply(checked)
        except Exception as e:                       # pragma: no cover - a bug: logged
            log.error("update %s logged but not applied: %s: %s", entry["seq"],
                      type(e).__name__, e)
            if not fut.done():
                fut.set_exception(UpdateError(
                    f"update {entry['seq']} was logged but could not be applied "
                    f"({type(e).__name__}); it is applied on the next restart", 500))
            return
        if not fut.done():
            fut.set_result({**checked, "seq": entry["seq"]})

    async def reload(self) -> dict:
        """Load the student again, replay the log onto it and swap it in (module docstring);
        a `PakdError` (the current student keeps answering) when it cannot be."""
        if self._reloading:
            raise UpdateError("a reload is already in progress", 409)
        self._reloading = True
        t0 = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            n = len(self.log.records)
            records = self.log.records[:n]

            def build():
                state = self.load()
                if state.lineage != self.state.lineage:
                    raise UpdateError(
                        f"{state.path} is another model (lineage {state.lineage}, not "
                        f"{self.state.lineage}): this service's update log belongs to its "
                        "users and items; serve it with another --state directory", 409)
                replay(state, records, log_id=self.log.id)
                return state

            state = await loop.run_in_executor(None, build)
            async with self._lock_():
                late = self.log.records[n:]
                replay_tail(state, late)
                self.state = state
                self.generation += 1
                self.version = model_version(state.path)
                self.loaded_at = time.time()
                if self.on_swap is not None:
                    self.on_swap(state)
            log.info("reloaded %s (%s): %d update(s) re-applied", state.name, self.version,
                     len(records) + len(late))
            return {"model": state.name, "version": self.version, "generation": self.generation,
                    "replayed": len(records) + len(late), "users": len(state.user_ids),
                    "items": len(state.item_ids),
                    "seconds": round(time.perf_counter() - t0, 3)}
        finally:
            self._reloading = False


def replay_tail(state: LiveState, records: list[dict]) -> None:
    """Records logged while a reload was building its state: already checked once, applied
    in order (an item the new student holds already is skipped)."""
    for rec in records:
        checked = state.check(rec, replay=True)
        if checked is not None:
            state.apply(checked)
