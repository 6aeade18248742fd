"""`pakd update`: fold new ratings, users and items - from files or from a service's update
log - into a saved student, and save the result as an ordinary student.

    pakd update --model M --ratings new.csv [--items new_items.csv] --out M2
    pakd update --model M --log STATE --out M2

Items first (so the ratings may name them), then ratings, each checked as the service
checks a request (`LiveState.check`); the first refusal stops the command, naming the file
and line, and nothing is written. The output is the student of the same kind with the
IDs grown (new users and items appended, every old index unchanged), beside its catalogue
(IDs, titles, the ratings folded in, the vocabularies, the lineage and which log records it
holds): `pakd export`, `pakd serve` and a further `pakd update` take it.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..atomic import atomic_write_text
from ..errors import DataError, PakdError
from ..models import save
from ..models.checks import read_config
from ..rundir import RunDir
from .deployable import load_deployable
from .features import item_fields_of
from .live import LiveState, replay
from .updatelog import read_state
from .updates import UpdateError, read_items_csv, read_ratings_csv


def _fold_files(state: LiveState, *, items, ratings) -> list[str]:
    """Items first (so the ratings may name them), then ratings, each checked as the
    service checks a request; the first refusal names its file and line."""
    files = []
    for path, reader in ((items, read_items_csv), (ratings, read_ratings_csv)):
        if path is None:
            continue
        for rec in reader(path):
            try:
                checked = state.check(rec)
            except UpdateError as e:
                fix = ("add the item with its side fields to --items" if e.status == 404
                       else "fix or delete the row")
                raise DataError(str(e), file=path, line=rec.get("line"), fix=fix) from None
            except PakdError as e:
                raise DataError(str(e), file=path, line=rec.get("line"),
                                fix="fix or delete the row") from None
            state.apply(checked)
        files.append(str(Path(path)))
    return files


def update(model: str | Path, out: str | Path, *, ratings: str | Path | None = None,
           items: str | Path | None = None, log: str | Path | None = None,
           run_dir: str | Path | None = None) -> dict:
    """Fold, save, and return a summary (counts and paths)."""
    if log is not None and (ratings is not None or items is not None):
        raise PakdError("give --log STATE, or --ratings (and --items) files - not both: a log "
                        "already holds the items its ratings name")
    if log is None and ratings is None and items is None:
        raise PakdError("nothing to fold in: give --ratings FILE (and --items FILE) or --log "
                        "STATE")
    dep = load_deployable(model, run_dir=run_dir)
    need_fields = items is not None or log is not None
    fields = item_fields_of(dep, dep.catalog.get("fields")) if need_fields else None
    if fields is None and dep.catalog.get("fields") is None and dep.run is not None:
        try:
            fields = item_fields_of(dep)
        except PakdError:
            fields = None
    state = LiveState(dep, fields, vectors=None)   # vectors when new items need them
    before = (len(state.user_ids), len(state.item_ids))
    updates = dict(dep.catalog.get("updates") or {})
    if log is not None:
        header, records = read_state(log)
        if header.get("lineage") != state.lineage:
            raise PakdError(f"--log {log} was written for another model ({header.get('model')!r}, "
                            f"lineage {header.get('lineage')}), not {dep.name} (lineage "
                            f"{state.lineage}); fold it into the model its service served")
        applied = replay(state, records, log_id=str(header.get("log")))
        updates.update(log=str(header.get("log")), records=len(records))
        source = f"{len(records)} log record(s), {applied} new"
    else:
        files = _fold_files(state, items=items, ratings=ratings)
        updates["files"] = updates.get("files", []) + files
        source = ", ".join(files)
    folded, catalog = state.saved(updates)
    stem = Path(out)
    if stem.suffix in (".safetensors", ".json"):
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    meta = {k: v for k, v in read_config(dep.path.with_suffix(".json")).items()
            if k in ("method", "budget", "start_params")}
    meta["updated_from"] = dep.name
    save(folded, stem, meta)
    atomic_write_text(RunDir.catalog_of(stem), json.dumps(catalog, separators=(",", ":")) + "\n")
    live = state.live_ratings()
    return {"model": str(stem), "kind": dep.kind, "source": source,
            "users": len(state.user_ids), "new_users": len(state.user_ids) - before[0],
            "items": len(state.item_ids), "new_items": len(state.item_ids) - before[1],
            "ratings": int(len(live[0])), "records": state.records}
