"""MovieLens releases: where their files live, how to fetch them, how to parse each format.

Formats follow the READMEs that ship with each release (Harper & Konstan, 2015):
- ml-100k: ``u.data`` (tab: user, item, rating, timestamp), ``u.user`` (``|``: user, age,
  gender, occupation, zip), ``u.item`` (``|``, latin-1: item, title, release date, video
  release date, IMDb URL, 19 genre flags).
- ml-1m: ``ratings.dat``, ``users.dat``, ``movies.dat``, ``::``-separated, latin-1; age and
  occupation are codes.
- ml-10m (folder ``ml-10M100K``): ``ratings.dat``, ``movies.dat``, ``tags.dat`` as in ml-1m,
  no demographics.
- ml-20m / 25m / 32m / latest / latest-small: ``ratings.csv``, ``movies.csv``, ``tags.csv``.

ml-latest-small ships inside pakd (GroupLens licence: redistribution under the same terms).
The others are read from ``--data-dir`` or downloaded from GroupLens (https) into the cache
and checked against the MD5 recorded here; ml-latest has none (GroupLens updates it in
place), so its download needs ``--allow-unverified``.
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..errors import DataError
from .dataset import Dataset, DuplicatePolicy, clean_ratings
from .fast import ROLES, clean_fast
from ..errors import LimitError
from ..limits import MAX_EXTRACT_BYTES, inflate_cap, names_text, quote, size_text
from .io import read_table
from .releases import BASE_URL, RELEASES, Release

log = logging.getLogger("pakd")


ML1M_AGES = {1: "under 18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49",
             50: "50-55", 56: "56+"}
ML1M_OCCUPATIONS = [
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer"]
ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western"]

_YEAR = re.compile(r"\((\d{4})(?:\s*[-–]\s*\d{0,4})?\)\s*$")


def default_cache_dir() -> Path:
    env = os.environ.get("PAKD_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pakd"


def embedded_dir() -> Path:
    return Path(str(resources.files("pakd") / "datasets" / "ml-latest-small"))


# ----------------------------------------------------------------------------- locating

def locate(release: Release, data_dir: Path | None, cache_dir: Path | None, *,
           download: bool, base_url: str = BASE_URL, quiet: bool = False,
           allow_insecure: bool = False, allow_unverified: bool = False) -> Path:
    """The folder holding the release's files.

    data_dir may be that folder itself or its parent. Without data_dir: the embedded copy
    (ml-latest-small), else the cache, else a checksum-verified download.
    """
    if data_dir is not None:
        data_dir = Path(data_dir)
        for cand in (data_dir, data_dir / release.folder, data_dir / release.name):
            if _has_files(cand, release):
                return cand
        missing = [f for f in release.files if not (data_dir / f).is_file()]
        raise DataError(
            f"{release.name} files not found (missing: {', '.join(missing)})", file=data_dir,
            fix=f"place {', '.join(release.files)} from {release.zip_name} in {data_dir} "
                f"(or in {data_dir / release.folder}), or drop --data-dir to download")
    if release.name == "ml-latest-small":
        return embedded_dir()
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    target = cache / release.folder
    if _has_files(target, release):
        return target
    if not download:
        raise DataError(f"{release.name} is not in the cache", file=target,
                        fix=f"run with --download, or unzip {release.zip_name} so that "
                            f"{target}/{release.files[0]} exists, or pass --data-dir")
    return download_release(release, cache, base_url=base_url, quiet=quiet,
                            allow_insecure=allow_insecure, allow_unverified=allow_unverified)


def _has_files(folder: Path, release: Release) -> bool:
    return all((folder / f).is_file() or (folder / (f + ".gz")).is_file() for f in release.files)


def check_url(url: str, *, allow_insecure: bool = False) -> None:
    """https only; plain http with ``allow_insecure`` (a mirror on a trusted network); any
    other scheme (file:, ftp:) never."""
    import urllib.parse
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme == "https" or (scheme == "http" and allow_insecure):
        return
    if scheme == "http":
        raise DataError(f"refusing to download over plain http: {quote(url, 120)}",
                        fix="use an https:// mirror; for a mirror on a network you trust, "
                            "add --allow-insecure (the checksum is still checked against "
                            "pakd's own table)")
    raise DataError(f"refusing to download from {quote(url, 120)}: pakd downloads over "
                    "https only", fix="give an https:// --base-url, or unzip the release "
                    "yourself and pass --data-dir")


def _unzip_into_cache(release: Release, zip_path: Path, cache: Path) -> None:
    """Extract to a temporary folder (within the caps) and rename it into place at the
    end, so an interrupted run never leaves a half-written dataset behind."""
    tmp_dir = Path(tempfile.mkdtemp(dir=cache, suffix=".unzip"))
    try:
        extract_zip(zip_path, tmp_dir)
        src = tmp_dir / release.folder
        if not _has_files(src, release):
            raise DataError(f"the archive has no {release.folder}/{release.files[0]}",
                            file=zip_path, fix="delete it and download again")
        final = cache / release.folder
        if final.exists():
            shutil.rmtree(final)
        os.replace(src, final)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def download_release(release: Release, cache: Path, *, base_url: str = BASE_URL,
                     quiet: bool = False, allow_insecure: bool = False,
                     allow_unverified: bool = False) -> Path:
    """Download ``<base_url>/<name>.zip`` (https; http with ``allow_insecure``), verify its
    MD5 against pakd's own table (`RELEASES`), unzip into ``cache`` within the extraction
    caps.

    A checksum fetched from the same mirror as the zip proves nothing (whoever can change
    the zip can change its .md5), so only the table counts: a release without a recorded
    checksum (ml-latest and ml-latest-small, which GroupLens updates in place) is refused
    unless ``allow_unverified``. The zip is streamed to a temporary file and only moved into
    place once the checksum matches; a mismatch deletes it. Extraction goes to a temporary
    folder renamed at the end, so an interrupted run never leaves a half-written dataset
    behind.
    """
    url = f"{base_url.rstrip('/')}/{release.zip_name}"
    check_url(url, allow_insecure=allow_insecure)
    expected = release.md5
    if expected is None and not allow_unverified:
        raise DataError(f"pakd has no checksum of record for {release.name} (GroupLens "
                        "updates it in place), so its download cannot be verified; a .md5 "
                        "from the same mirror would prove nothing", file=cache / release.folder,
                        fix=f"download {release.zip_name} yourself, unzip it and pass "
                            "--data-dir, or add --allow-unverified to accept it unchecked")
    cache.mkdir(parents=True, exist_ok=True)
    zip_path = cache / release.zip_name
    tmp = None
    try:
        if expected is None:
            log.warning("%s: no checksum of record; the download is used unverified "
                        "(--allow-unverified)", release.name)
        if not (zip_path.is_file() and expected is not None and _md5(zip_path) == expected):
            fd, tmp = tempfile.mkstemp(dir=cache, suffix=".part")
            os.close(fd)
            got = _fetch(url, Path(tmp), quiet=quiet)
            if expected is not None and got != expected:
                raise DataError(f"checksum mismatch for {url}: md5 {got}, expected {expected}",
                                file=zip_path,
                                fix="retry the download; if it persists the mirror is corrupt "
                                    "or the release changed - fetch the zip by hand")
            os.replace(tmp, zip_path)
    except (urllib.error.URLError, TimeoutError, ConnectionError,
            http.client.HTTPException) as e:  # offline, timed out, connection dropped mid-way
        raise DataError(
            f"could not download {url} ({getattr(e, 'reason', e)})", file=cache / release.folder,
            fix=f"without internet, fetch {release.zip_name} elsewhere and unzip it so that "
                f"{cache / release.folder}/{release.files[0]} exists, or pass --data-dir "
                f"DIR with {', '.join(release.files)} in DIR") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    _unzip_into_cache(release, zip_path, cache)
    return cache / release.folder


def extract_zip(zip_path: Path, dest: Path) -> None:
    """Unzip into ``dest``, refusing before anything is written: a member whose path leaves
    ``dest`` (zip-slip), a member that would inflate past `pakd.limits.inflate_cap` of its
    compressed size, a total past MAX_EXTRACT_BYTES. Members are then copied a chunk at a
    time and counted, so a size the archive misstates cannot get past the caps either."""
    fix = "delete it and download again from a mirror you trust"
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"not a readable zip archive ({e})", file=zip_path, fix=fix) from None
    with zf:
        infos = zf.infolist()
        root = dest.resolve()
        total = 0
        for info in infos:
            target = (dest / info.filename).resolve()
            if not target.is_relative_to(root):      # by path parts, not text
                raise DataError(f"unsafe path {quote(info.filename)} in the archive",
                                file=zip_path, fix=fix)
            if info.file_size > inflate_cap(info.compress_size):
                raise LimitError(f"member {quote(info.filename)} inflates from "
                                 f"{size_text(info.compress_size)} to "
                                 f"{size_text(info.file_size)}: refused as a possible "
                                 "decompression bomb", file=zip_path, fix=fix)
            total += info.file_size
        if total > MAX_EXTRACT_BYTES:
            raise LimitError(f"the archive unpacks to {size_text(total)}, over pakd's limit "
                             f"of {size_text(MAX_EXTRACT_BYTES)}", file=zip_path, fix=fix)
        for info in infos:
            target = dest / info.filename
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            try:
                with zf.open(info) as src, open(target, "wb") as out:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > info.file_size:
                            raise LimitError(f"member {quote(info.filename)} holds more than "
                                             "the size the archive states", file=zip_path,
                                             fix=fix)
                        out.write(chunk)
            except (zipfile.BadZipFile, zlib.error, EOFError) as e:
                raise DataError(f"member {quote(info.filename)} is damaged ({e})",
                                file=zip_path, fix=fix) from None


def _fetch(url: str, dest: Path, *, quiet: bool) -> str:
    h = hashlib.md5()
    with urllib.request.urlopen(url, timeout=60) as resp, open(dest, "wb") as out:
        total = int(resp.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {Path(url).name}",
                  disable=quiet) as bar:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                h.update(chunk)
                bar.update(len(chunk))
    return h.hexdigest()


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- parsing

def load_movielens(name: str, *, data_dir: Path | None = None, cache_dir: Path | None = None,
                   download: bool = True, base_url: str = BASE_URL, tags_top_n: int = 50,
                   allow_insecure: bool = False, allow_unverified: bool = False,
                   duplicates: DuplicatePolicy = "error", zip_prefix_len: int = 2,
                   quiet: bool = False) -> Dataset:
    release = RELEASES[name]
    folder = locate(release, data_dir, cache_dir, download=download, base_url=base_url,
                    allow_insecure=allow_insecure, allow_unverified=allow_unverified,
                    quiet=quiet)
    parse = {"100k": _parse_100k, "1m": _parse_1m, "10m": _parse_10m, "csv": _parse_csv}[release.fmt]
    ds = parse(release, folder, duplicates=duplicates, tags_top_n=tags_top_n,
               zip_prefix_len=zip_prefix_len)
    ds.source = {"release": release.name, "folder": str(folder)}
    return ds


def _file(folder: Path, name: str) -> Path:
    p = folder / name
    if not p.is_file() and (folder / (name + ".gz")).is_file():
        return folder / (name + ".gz")
    return p


def _read(folder: Path, name: str, **kw) -> pd.DataFrame:
    return read_table(_file(folder, name), **kw)


def _year_from_title(titles: pd.Series) -> pd.Series:
    y = titles.str.extract(_YEAR)[0]
    return pd.to_numeric(y, errors="coerce")


def _genres(col: pd.Series) -> pd.Series:
    return col.fillna("").map(
        lambda s: [] if s in ("", "(no genres listed)") else s.split("|"))


def _items_from_movies(movies: pd.DataFrame) -> pd.DataFrame:
    items = pd.DataFrame({
        "title": movies["title"].to_numpy(),
        "genres": _genres(movies["genres"]).to_numpy(),
        "year": _year_from_title(movies["title"]).to_numpy(),
    }, index=pd.Index(movies["item"].astype(np.int64).to_numpy(), name="item"))
    return items[~items.index.duplicated()]


def _top_tags(tags: pd.DataFrame, items: pd.DataFrame, top_n: int) -> pd.Series:
    """Per item, the tags among the ``top_n`` most frequent ones (case-folded)."""
    t = tags.assign(tag=tags["tag"].str.strip().str.lower())
    t = t[t["tag"] != ""]
    top = t["tag"].value_counts().head(top_n).index
    t = t[t["tag"].isin(top)]
    per_item = t.groupby("item")["tag"].agg(lambda s: sorted(set(s)))
    out = pd.Series([[] for _ in range(len(items))], index=items.index, dtype=object)
    common = per_item.index.intersection(items.index)
    out.loc[common] = per_item.loc[common]
    return out


def _with_tags(release: Release, ratings, scale, items: pd.DataFrame, tags: pd.DataFrame | None,
               tags_top_n: int) -> Dataset:
    """The dataset of a tag release: tagged items counted, the top tags as an item field."""
    feats = {"genres": "multi", "year": "numeric"}
    tagged = events = None
    if tags is not None:
        tagged = pd.unique(tags["item"].astype(np.int64))
        if tags_top_n > 0:
            items["tags"] = _top_tags(tags, items, tags_top_n)
            feats["tags"] = "multi"
            events = _tag_events(tags)
    return Dataset(release.name, ratings, scale, items=items, item_features=feats,
                   tagged_items=tagged, tag_events=events, tags_top_n=tags_top_n)


def _tag_events(tags: pd.DataFrame) -> pd.DataFrame:
    """The tag applications, users read by the ratings' rule and times as integers (a row
    whose time is not a number can never be placed before a cut: it is left out)."""
    from .dataset import ids_from_text
    ts = pd.to_numeric(tags["timestamp"], errors="coerce")
    ok = ts.notna().to_numpy()
    t = tags[ok]
    return pd.DataFrame({"user": ids_from_text(t["user"]),
                         "item": t["item"].astype(np.int64).to_numpy(),
                         "tag": t["tag"].astype(str).to_numpy(),
                         "timestamp": ts[ok].astype(np.int64).to_numpy()})


def tags_as_of(ds: Dataset, cut) -> Dataset:
    """``ds`` with its ``tags`` field rebuilt - vocabulary (the top N tags) included - from
    the tag events up to ``cut`` only: an int (every event at or before that time) or a
    Series user -> time (each author's events at or before that author's time; an author
    the Series lacks has no cut, and none of their events is kept). The caller's dataset is
    not changed."""
    from dataclasses import replace
    if ds.tag_events is None or ds.items is None or "tags" not in ds.items.columns:
        return ds
    ev = ds.tag_events
    if isinstance(cut, pd.Series):
        limit = ev["user"].map(cut)
        keep = (limit.notna() & (ev["timestamp"] <= limit.fillna(0))).to_numpy()
    else:
        keep = (ev["timestamp"] <= int(cut)).to_numpy()
    items = ds.items.copy()
    items["tags"] = _top_tags(ev[keep], items, ds.tags_top_n)
    return replace(ds, items=items,
                   notes=ds.notes + [f"tags field: {int(keep.sum())} of {len(ev)} tag events "
                                     "at or before the split's train cut"])


def _ratings_dat(release: Release, folder: Path, duplicates):
    """ratings.dat of ML-1M/10M (``::``-separated, Latin-1): (ratings, scale)."""
    fast = clean_fast(_file(folder, "ratings.dat"), columns=dict(zip(ROLES, ROLES)), sep="::",
                      names=list(ROLES), quoted=False, scale=release.scale,
                      duplicates=duplicates)     # IDs and numbers only: ASCII reads as UTF-8
    if fast is not None:
        return fast
    raw = _read(folder, "ratings.dat", sep="::", encoding="latin-1",
                names=["user", "item", "rating", "timestamp"], min_columns=4)
    return clean_ratings(raw, file=_file(folder, "ratings.dat"), first_line=1,
                         scale=release.scale, duplicates=duplicates)


def _movies_dat(folder: Path) -> pd.DataFrame:
    """movies.dat of ML-1M/10M: the item table."""
    movies = _read(folder, "movies.dat", sep="::", encoding="latin-1",
                   names=["item", "title", "genres"], min_columns=3)
    return _items_from_movies(_int_col(movies, "item", _file(folder, "movies.dat")))


def _parse_csv(release: Release, folder: Path, *, duplicates, tags_top_n, **_) -> Dataset:
    rpath = _file(folder, "ratings.csv")
    fast = clean_fast(rpath, columns=dict(zip(ROLES, ["userId", "movieId", "rating",
                                                     "timestamp"])),
                      scale=release.scale, duplicates=duplicates)
    if fast is None:
        raw = _read(folder, "ratings.csv", sep=",", min_columns=4)
        raw = _expect_columns(raw, ["userId", "movieId", "rating", "timestamp"], rpath)
        raw.columns = ["user", "item", "rating", "timestamp"]
        fast = clean_ratings(raw, file=rpath, first_line=2, scale=release.scale,
                             duplicates=duplicates)
    ratings, scale = fast
    mpath = _file(folder, "movies.csv")
    movies = _expect_columns(_read(folder, "movies.csv", sep=",", min_columns=3),
                             ["movieId", "title", "genres"], mpath)
    movies.columns = ["item", "title", "genres"]
    items = _items_from_movies(_int_col(movies, "item", mpath, 2))
    tags = None
    if _file(folder, "tags.csv").is_file():
        tpath = _file(folder, "tags.csv")
        tags = _expect_columns(_read(folder, "tags.csv", sep=",", min_columns=4),
                               ["userId", "movieId", "tag", "timestamp"], tpath)
        tags.columns = ["user", "item", "tag", "timestamp"]
        tags = _int_col(tags, "item", tpath, 2)
    return _with_tags(release, ratings, scale, items, tags, tags_top_n)


def _parse_1m(release: Release, folder: Path, *, duplicates, zip_prefix_len, **_) -> Dataset:
    ratings, scale = _ratings_dat(release, folder, duplicates)
    upath = _file(folder, "users.dat")
    users = _read(folder, "users.dat", sep="::", encoding="latin-1",
                  names=["user", "gender", "age", "occupation", "zip"], min_columns=5)
    users = _int_col(users, "user", upath)
    age = pd.to_numeric(users["age"], errors="coerce").map(ML1M_AGES)
    occ = pd.to_numeric(users["occupation"], errors="coerce")
    users_df = pd.DataFrame({
        "gender": users["gender"].str.strip().to_numpy(),
        "age": age.to_numpy(),
        "occupation": occ.map(lambda c: ML1M_OCCUPATIONS[int(c)]
                              if pd.notna(c) and 0 <= c < len(ML1M_OCCUPATIONS) else None).to_numpy(),
        "zip": users["zip"].str.strip().str[:zip_prefix_len].to_numpy(),
    }, index=pd.Index(users["user"].astype(np.int64).to_numpy(), name="user"))
    items = _movies_dat(folder)
    return Dataset(release.name, ratings, scale, users=users_df, items=items,
                   user_features={"gender": "categorical", "age": "categorical",
                                  "occupation": "categorical", "zip": "categorical"},
                   item_features={"genres": "multi", "year": "numeric"})


def _parse_10m(release: Release, folder: Path, *, duplicates, tags_top_n, **_) -> Dataset:
    ratings, scale = _ratings_dat(release, folder, duplicates)
    items = _movies_dat(folder)
    tags = None
    if _file(folder, "tags.dat").is_file():
        tags = _int_col(_read(folder, "tags.dat", sep="::", encoding="latin-1",
                              names=["user", "item", "tag", "timestamp"], min_columns=4),
                        "item", _file(folder, "tags.dat"))
    return _with_tags(release, ratings, scale, items, tags, tags_top_n)


def _parse_100k(release: Release, folder: Path, *, duplicates, zip_prefix_len, **_) -> Dataset:
    rpath = _file(folder, "u.data")
    raw = _read(folder, "u.data", sep="\t", names=["user", "item", "rating", "timestamp"],
                min_columns=4)
    ratings, scale = clean_ratings(raw, file=rpath, first_line=1, scale=release.scale,
                                   duplicates=duplicates)
    upath = _file(folder, "u.user")
    users = _read(folder, "u.user", sep="|", encoding="latin-1",
                  names=["user", "age", "gender", "occupation", "zip"], min_columns=5)
    users = _int_col(users, "user", upath)
    age = pd.to_numeric(users["age"], errors="coerce")
    users_df = pd.DataFrame({
        "gender": users["gender"].str.strip().to_numpy(),
        "age": _age_bucket(age).to_numpy(),
        "occupation": users["occupation"].str.strip().to_numpy(),
        "zip": users["zip"].str.strip().str[:zip_prefix_len].to_numpy(),
    }, index=pd.Index(users["user"].astype(np.int64).to_numpy(), name="user"))
    ipath = _file(folder, "u.item")
    cols = ["item", "title", "release_date", "video_release_date", "url"] + ML100K_GENRES
    it = _read(folder, "u.item", sep="|", encoding="latin-1", names=cols, min_columns=24)
    it = _int_col(it, "item", ipath)
    flags = it[ML100K_GENRES].apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy() > 0
    genres = [[g for g, f in zip(ML100K_GENRES, row) if f and g != "unknown"] for row in flags]
    year = pd.to_datetime(it["release_date"], format="%d-%b-%Y", errors="coerce").dt.year
    year = year.fillna(_year_from_title(it["title"]))
    items = pd.DataFrame({"title": it["title"].to_numpy(), "genres": genres,
                          "year": year.to_numpy()},
                         index=pd.Index(it["item"].astype(np.int64).to_numpy(), name="item"))
    return Dataset(release.name, ratings, scale, users=users_df, items=items,
                   user_features={"gender": "categorical", "age": "categorical",
                                  "occupation": "categorical", "zip": "categorical"},
                   item_features={"genres": "multi", "year": "numeric"})


def _age_bucket(age: pd.Series) -> pd.Series:
    """ML-100K's exact ages mapped to ML-1M's age groups, so both releases share one field."""
    edges = [-np.inf, 18, 25, 35, 45, 50, 56, np.inf]
    labels = list(ML1M_AGES.values())
    return pd.cut(age, bins=edges, right=False, labels=labels).astype(object)


def _expect_columns(df: pd.DataFrame, cols: list[str], path: Path) -> pd.DataFrame:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(f"missing column(s) {missing}; the header has {names_text(df.columns)}",
                        file=path, line=1, fix=f"the file needs the header {','.join(cols)}")
    return df[cols].copy()


def _int_col(df: pd.DataFrame, col: str, path: Path, first_line: int = 1) -> pd.DataFrame:
    vals = pd.to_numeric(df[col], errors="coerce")
    bad = vals.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{col} {quote(df[col].iloc[i])} is not an integer ID", file=path,
                        line=int(df.index[i]) + first_line, fix="correct or delete the row")
    df = df.copy()
    df[col] = vals.astype(np.int64)
    return df
