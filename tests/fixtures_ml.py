"""Tiny MovieLens releases written in their exact official formats, for the data tests.

Each writer creates the release's folder inside ``root`` and returns it. The rows are few
but follow the READMEs byte for byte: separators, header or not, encodings (latin-1 for
ML-100K's u.item and ML-1M/10M's .dat files), date formats and code tables.
"""
from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

# ML-100K ----------------------------------------------------------------------------

# user  item  rating  timestamp  (tab-separated, no header)
ML100K_RATINGS = [
    (1, 1, 5, 874965758),
    (1, 2, 3, 876893171),
    (2, 1, 4, 888550871),
    (2, 3, 1, 888551000),
    (3, 2, 2, 879451804),
    (3, 3, 5, 879452000),
    (4, 1, 4, 892003400),
]
# user | age | gender | occupation | zip
ML100K_USERS = [
    (1, 24, "M", "technician", "85711"),
    (2, 53, "F", "other", "94043"),
    (3, 17, "M", "student", "32067"),
    (4, 45, "F", "writer", "T8H1N"),
]
_G = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
      "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
      "Romance", "Sci-Fi", "Thriller", "War", "Western"]
# item, title, release date, genres. 4 has no year in its title (the date gives it); 5 is
# like the real item 267 ("unknown", no date, genre flag "unknown"). Nobody rated 4 or 5.
ML100K_ITEMS = [
    (1, "Toy Story (1995)", "01-Jan-1995", ["Animation", "Children's", "Comedy"]),
    (2, "GoldenEye (1995)", "01-Jan-1995", ["Action", "Adventure", "Thriller"]),
    (3, "Misérables, Les (1995)", "01-Jan-1995", ["Drama", "War"]),
    (4, "Untitled Documentary", "14-Feb-1997", ["Documentary"]),
    (5, "unknown", "", ["unknown"]),
]


def ml100k_lines() -> dict[str, bytes]:
    data = "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in ML100K_RATINGS).encode("ascii")
    user = "".join("|".join(map(str, row)) + "\n" for row in ML100K_USERS).encode("ascii")
    rows = []
    for iid, title, date, genres in ML100K_ITEMS:
        flags = "|".join("1" if g in genres else "0" for g in _G)
        url = ("http://us.imdb.com/M/title-exact?" + title.replace(" ", "%20")) if date else ""
        rows.append(f"{iid}|{title}|{date}||{url}|{flags}\n")
    item = "".join(rows).encode("latin-1")
    return {"u.data": data, "u.user": user, "u.item": item}


def write_ml100k(root: Path, folder: str = "ml-100k", **override: bytes) -> Path:
    d = Path(root) / folder
    d.mkdir(parents=True, exist_ok=True)
    for name, content in {**ml100k_lines(), **override}.items():
        (d / name).write_bytes(content)
    return d


def ml100k_zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in ml100k_lines().items():
            zf.writestr(f"ml-100k/{name}", content)
        zf.writestr("ml-100k/README", "tiny test copy\n")
    return buf.getvalue()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# ML-1M ------------------------------------------------------------------------------

ML1M_RATINGS = [
    (1, 1193, 5, 978300760),
    (1, 661, 3, 978302109),
    (2, 1193, 4, 978298413),
    (2, 3408, 4, 978299000),
    (3, 661, 2, 978297867),
]
# UserID::Gender::Age::Occupation::Zip-code
ML1M_USERS = [
    (1, "F", 1, 10, "48067"),
    (2, "M", 56, 16, "70072"),
    (3, "M", 25, 15, "55117"),
]
# MovieID::Title::Genres ; 3409 is in the catalogue but nobody rated it
ML1M_MOVIES = [
    (661, "James and the Giant Peach (1996)", "Animation|Children's|Musical"),
    (1193, "One Flew Over the Cuckoo's Nest (1975)", "Drama"),
    (3408, "Erin Brockovich (2000)", "Drama"),
    (3409, "Cité des enfants perdus, La (1995)", "Adventure|Sci-Fi"),
]


def write_ml1m(root: Path, folder: str = "ml-1m", **override: bytes) -> Path:
    d = Path(root) / folder
    d.mkdir(parents=True, exist_ok=True)
    files = {
        "ratings.dat": "".join("::".join(map(str, r)) + "\n" for r in ML1M_RATINGS),
        "users.dat": "".join("::".join(map(str, r)) + "\n" for r in ML1M_USERS),
        "movies.dat": "".join("::".join(map(str, r)) + "\n" for r in ML1M_MOVIES),
    }
    for name, text in files.items():
        (d / name).write_bytes(text.encode("latin-1"))
    for name, content in override.items():
        (d / name).write_bytes(content)
    return d


# ML-10M (folder ml-10M100K) -------------------------------------------------------------

ML10M_RATINGS = [
    (1, 122, 5, 838985046),
    (1, 185, 4.5, 838983525),
    (2, 122, 0.5, 868245777),
    (3, 185, 3.5, 1133571035),
]
ML10M_MOVIES = [
    (122, "Boomerang (1992)", "Comedy|Romance"),
    (185, "Net, The (1995)", "Action|Crime|Thriller"),
    (292, "Outbreak (1995)", "Action|Drama|Sci-Fi|Thriller"),
    (316, "Stargate (1994)", "Action|Adventure|Sci-Fi"),
]
# UserID::MovieID::Tag::Timestamp ; 292 is tagged but never rated
ML10M_TAGS = [
    (15, 122, "excellent!", 1215184630),
    (20, 185, "hacker", 1188263867),
    (20, 292, "Virus", 1188263900),
    (21, 292, "virus", 1188263950),
]


def write_ml10m(root: Path, folder: str = "ml-10M100K") -> Path:
    d = Path(root) / folder
    d.mkdir(parents=True, exist_ok=True)
    fmt = lambda rows: "".join("::".join(f"{v:g}" if isinstance(v, float) else str(v)  # noqa: E731
                                         for v in r) + "\n" for r in rows)
    (d / "ratings.dat").write_bytes(fmt(ML10M_RATINGS).encode("latin-1"))
    (d / "movies.dat").write_bytes(fmt(ML10M_MOVIES).encode("latin-1"))
    (d / "tags.dat").write_bytes(fmt(ML10M_TAGS).encode("latin-1"))
    return d


# CSV releases (ml-20m / 25m / 32m / latest) ----------------------------------------------

CSV_RATINGS = [
    (1, 2, 3.5, 1112486027),
    (1, 29, 3.5, 1112484676),
    (2, 2, 4.0, 974820889),
    (2, 32, 0.5, 974820900),
    (3, 29, 5.0, 1439472215),
]
CSV_MOVIES = [
    (2, "Jumanji (1995)", "Adventure|Children|Fantasy"),
    (29, "\"City of Lost Children, The (Cité des enfants perdus, La) (1995)\"",
     "Adventure|Drama|Fantasy|Mystery|Sci-Fi"),
    (32, "Twelve Monkeys (a.k.a. 12 Monkeys) (1995)", "Mystery|Sci-Fi|Thriller"),
    (50, "\"Usual Suspects, The (1995)\"", "Crime|Mystery|Thriller"),
    (60, "Unseen Film (2015)", "(no genres listed)"),
]
# 50 is tagged but never rated; 60 neither rated nor tagged
CSV_TAGS = [
    (18, 50, "twist ending", 1457000000),
    (18, 2, "Robin Williams", 1457000001),
    (65, 2, "robin williams", 1368150078),
    (65, 29, "dark", 1368150079),
]


def write_csv_release(root: Path, folder: str = "ml-20m") -> Path:
    d = Path(root) / folder
    d.mkdir(parents=True, exist_ok=True)
    (d / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n"
        + "".join(f"{u},{i},{r:.1f},{t}\n" for u, i, r, t in CSV_RATINGS), encoding="utf-8")
    (d / "movies.csv").write_text(
        "movieId,title,genres\n" + "".join(f"{i},{t},{g}\n" for i, t, g in CSV_MOVIES),
        encoding="utf-8")
    (d / "tags.csv").write_text(
        "userId,movieId,tag,timestamp\n" + "".join(f"{u},{i},{t},{s}\n" for u, i, t, s in CSV_TAGS),
        encoding="utf-8")
    return d


def tree_digest(folder: Path) -> dict[str, str]:
    """MD5 of every file under ``folder`` (to prove loaders never modify their input)."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): md5(p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}
