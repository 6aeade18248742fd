"""Updates as records: what a client or a file says happened, before it is checked against
a model (`pakd.deploy.live.LiveState.check`) and applied.

Two kinds, in original IDs:

    {"type": "ratings", "user": ID, "ratings": [[item, rating], ...]}   a user rated items
    {"type": "item", "item": ID, "title": TEXT, "features": {field: value}}   a new item

They come from the service's request bodies (`ratings_record`, `item_record`: the shapes
of ``POST /users/{id}/ratings`` and ``POST /items``), from files (`read_ratings_csv`,
`read_items_csv`: what `pakd update --ratings/--items` reads) and from the update log.
Within one record, and between records, a (user, item) pair rated again keeps the latest
rating: the stated rule for duplicates.
"""
from __future__ import annotations

import math
from pathlib import Path

from ..errors import DataError, PakdError
from ..limits import quote, short

MAX_ID_CHARS = 200
MAX_TITLE_CHARS = 500
MAX_FEATURES = 32
MAX_FEATURE_VALUES = 64
ITEM_BODY_BYTES = 64 * 1024


class UpdateError(PakdError):
    """An update refused, with the HTTP status that says why (404 unknown item, 409 an item
    that exists, 413 too many, 422 malformed)."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


def is_id(x) -> bool:
    return (isinstance(x, (str, int)) and not isinstance(x, bool)
            and 0 < len(str(x).strip()) <= MAX_ID_CHARS
            and not any(ord(c) < 32 for c in str(x)))


def _rating(x) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float, str)):
        return None
    try:
        v = float(x)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def ratings_record(user: str, body, *, max_ratings: int) -> dict:
    """The record of ``POST /users/{user}/ratings`` with body ``{"ratings": [{"item": ID,
    "rating": X}, ...]}`` (shape only; items and the rating scale are the model's to
    check)."""
    if not is_id(user):
        raise UpdateError(f"the user ID must be 1-{MAX_ID_CHARS} printable characters")
    rows = body.get("ratings") if isinstance(body, dict) else None
    shape = 'expected {"ratings": [{"item": ID, "rating": X}, ...]}'
    if not isinstance(rows, list) or not rows:
        raise UpdateError(f"bad request: {shape} with at least one rating")
    if len(rows) > max_ratings:
        raise UpdateError(f"{len(rows)} ratings is over the limit of {max_ratings} per request; "
                          "split them", 413)
    out = []
    for n, r in enumerate(rows):
        if not (isinstance(r, dict) and set(r) <= {"item", "rating"} and is_id(r.get("item"))):
            raise UpdateError(f"bad request: rating {n}: {shape} (IDs as strings or integers)")
        v = _rating(r.get("rating"))
        if v is None or isinstance(r.get("rating"), str):
            raise UpdateError(f"bad request: rating {n}: the rating must be a finite number, "
                              f"got {short(r.get('rating'))}")
        out.append([r["item"], v])
    return {"type": "ratings", "user": user, "ratings": out}


def item_record(body) -> dict:
    """The record of ``POST /items`` with body ``{"item": ID, "title": TEXT, "features":
    {field: value}}``."""
    shape = 'expected {"item": ID, "title": TEXT, "features": {field: value, ...}}'
    if not (isinstance(body, dict) and set(body) <= {"item", "title", "features"}
            and is_id(body.get("item"))):
        raise UpdateError(f"bad request: {shape}")
    title = body.get("title", "")
    feats = body.get("features", {})
    if not isinstance(title, str) or len(title) > MAX_TITLE_CHARS:
        raise UpdateError(f"bad request: the title must be text of at most {MAX_TITLE_CHARS} "
                          "characters")
    if not isinstance(feats, dict) or len(feats) > MAX_FEATURES:
        raise UpdateError(f"bad request: features must be an object of at most {MAX_FEATURES} "
                          "fields")
    for k, v in feats.items():
        ok = (isinstance(v, (str, int, float)) and not isinstance(v, bool)) or (
            isinstance(v, list) and len(v) <= MAX_FEATURE_VALUES
            and all(isinstance(x, str) for x in v))
        if not ok or (isinstance(v, str) and len(v) > 4096):
            raise UpdateError(f"bad request: feature {short(k)}: a number, a text or a list of "
                              f"at most {MAX_FEATURE_VALUES} texts")
    return {"type": "item", "item": body["item"], "title": title.strip(), "features": feats}


def _table(path: Path, need: tuple[str, ...], what: str):
    from ..data.io import read_table
    df = read_table(Path(path), sep="\t" if str(path).endswith((".tsv", ".tsv.gz")) else ",")
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise DataError(f"no column {', '.join(missing)} in the header (it has "
                        f"{', '.join(quote(c, 24) for c in df.columns[:12])})", file=path, line=1,
                        fix=f"a {what} file has a header line with the columns "
                        f"{', '.join(need)}")
    return df


def read_ratings_csv(path: str | Path) -> list[dict]:
    """Ratings records, one per row, oldest first: rows in timestamp order when the file has
    a ``timestamp`` column (ties: file order), else in file order - so a pair rated twice
    keeps its later rating. Columns: user, item, rating[, timestamp]."""
    path = Path(path)
    df = _table(path, ("user", "item", "rating"), "ratings")
    if df.empty:
        raise DataError("no ratings in the file", file=path, fix="give at least one row")
    rows = []
    ts = "timestamp" in df.columns
    for pos, (line, r) in enumerate(zip(df.index, df.to_dict("records"))):
        where = dict(file=path, line=int(line) + 2)
        for col in ("user", "item"):
            if not is_id(r[col]):
                raise DataError(f"{col} {quote(r[col])} is not an ID (1-{MAX_ID_CHARS} printable "
                                "characters)", **where, fix="fill in the ID")
        v = _rating(r["rating"])
        if v is None:
            raise DataError(f"rating {quote(r['rating'])} is not a number", **where,
                            fix="give a number on the model's rating scale")
        t = 0.0
        if ts and str(r["timestamp"]).strip():
            t = _rating(r["timestamp"])
            if t is None:
                raise DataError(f"timestamp {quote(r['timestamp'])} is not a number (Unix "
                                "seconds)", **where, fix="give Unix seconds or leave it empty")
        rows.append((t, pos, int(line) + 2, r["user"].strip(), r["item"].strip(), v))
    rows.sort()
    return [{"type": "ratings", "user": u, "ratings": [[i, v]], "line": line}
            for _, _, line, u, i, v in rows]


def read_items_csv(path: str | Path) -> list[dict]:
    """Item records, one per row: columns item, title (optional) and the model's item
    fields (a multi-valued field's values separated by '|'); an empty cell is missing."""
    path = Path(path)
    df = _table(path, ("item",), "new items")
    out = []
    for line, r in zip(df.index, df.to_dict("records")):
        if not is_id(r["item"]):
            raise DataError(f"item {quote(r['item'])} is not an ID", file=path,
                            line=int(line) + 2, fix="fill in the item's ID")
        feats = {k: v for k, v in r.items() if k not in ("item", "title") and str(v).strip()}
        out.append({"type": "item", "item": r["item"].strip(),
                    "title": str(r.get("title", "")).strip(), "features": feats,
                    "line": int(line) + 2})
    return out
