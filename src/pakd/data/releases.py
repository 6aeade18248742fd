"""The MovieLens releases pakd knows and where they are downloaded from: one constant for
the download base (`--base-url`, ``data.base_url``, and `pakd data download` default to
it), and per release its folder, format, files, rating scale and checksum. No heavy imports:
the settings read the base URL from here."""
from __future__ import annotations

from dataclasses import dataclass

BASE_URL = "https://files.grouplens.org/datasets/movielens"


@dataclass(frozen=True)
class Release:
    name: str
    folder: str            # top folder inside the zip
    fmt: str               # "100k" | "1m" | "10m" | "csv"
    files: tuple[str, ...]  # files that must be present
    scale: tuple[float, float]
    md5: str | None        # None: no checksum of record (GroupLens updates it in place)

    @property
    def zip_name(self) -> str:
        return f"{self.name}.zip"


RELEASES: dict[str, Release] = {r.name: r for r in [
    Release("ml-100k", "ml-100k", "100k", ("u.data", "u.item", "u.user"), (1, 5),
            "0e33842e24a9c977be4e0107933c0723"),
    Release("ml-1m", "ml-1m", "1m", ("ratings.dat", "users.dat", "movies.dat"), (1, 5),
            "c4d9eecfca2ab87c1945afe126590906"),
    Release("ml-10m", "ml-10M100K", "10m", ("ratings.dat", "movies.dat"), (0.5, 5),
            "ce571fd55effeba0271552578f2648bd"),
    Release("ml-20m", "ml-20m", "csv", ("ratings.csv", "movies.csv"), (0.5, 5),
            "cd245b17a1ae2cc31bb14903e1204af3"),
    Release("ml-25m", "ml-25m", "csv", ("ratings.csv", "movies.csv"), (0.5, 5),
            "6b51fb2759a8657d3bfcbfc42b592ada"),
    # GroupLens's published ml-32m.zip.md5 (238,950,008 bytes), as recorded independently by
    # several projects that verify this download; pakd had no network to fetch it itself
    Release("ml-32m", "ml-32m", "csv", ("ratings.csv", "movies.csv"), (0.5, 5),
            "d472be332d4daa821edc399621853b57"),
    Release("ml-latest", "ml-latest", "csv", ("ratings.csv", "movies.csv"), (0.5, 5), None),
    Release("ml-latest-small", "ml-latest-small", "csv", ("ratings.csv", "movies.csv"),
            (0.5, 5), None),
]}
