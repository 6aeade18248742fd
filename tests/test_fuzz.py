"""Property-based tests of everything that reads user input (issue 15, item 5).

Any generated input either loads - and then satisfies the loader's promises - or raises
pakd's own error; never a traceback, never a changed input file. `make test` runs the
deterministic "ci" profile (few examples, derandomized); `benchmarks/fuzz.py` runs the
same properties under the "bench" profile with many more examples.
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
import yaml
from fixtures_ml import write_ml1m, write_ml100k
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pakd.config import build_config, parse_cli_value, settings as all_settings
from pakd.data import load_movielens, load_table
from pakd.errors import PakdError

settings.register_profile(
    "ci", max_examples=int(os.environ.get("PAKD_FUZZ_EXAMPLES", 40)), derandomize=True,
    deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                          HealthCheck.too_slow])
settings.register_profile(
    "bench", max_examples=int(os.environ.get("PAKD_FUZZ_EXAMPLES", 2000)), deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile(os.environ.get("PAKD_FUZZ_PROFILE", "ci"))
# a numeric overflow is a silent wrong value: fail on it as on a traceback
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

# values that have broken or could break a loader: numbers in every spelling, blanks,
# quotes, delimiters inside values, line breaks, non-ASCII, huge and signed numbers
TRICKY = ["1", "2", "3", "4", "5", "0", "-1", "0.5", "4.5", "50", "1e3", "1.0", "007", "",
          " ", "nan", "NaN", "inf", "-inf", "NA", "null", "None", "x", "é", "ß", "\u2603",
          '"', '"1"', "'", ",", ";", "\t", "|", "::", "\r", "1,5", "12345678901234567890123",
          "-9223372036854775809", "9223372036854775807", "964982703", "2018-09-24",
          "1970-01-01T00:00:00", "24/09/2018", "true", "\x00", "\ufeff"]
token = st.one_of(st.sampled_from(TRICKY), st.text(max_size=6),
                  st.integers(-10**20, 10**20).map(str),
                  st.floats(allow_nan=True, allow_infinity=True).map(repr))
HEADERS = ["user", "item", "rating", "timestamp", "userId", "movieId", " user ", '"item"',
           "rating ", "", "user", "extra"]
SEPS = [",", "\t", ";", "|", "::"]


@st.composite
def rating_files(draw) -> tuple[bytes, str]:
    """(file bytes, file name): a delimited table with a header, mostly well-formed rows
    with tricky values mixed in, sometimes mangled at the byte level."""
    sep = draw(st.sampled_from(SEPS))
    ncol = draw(st.integers(1, 5))
    header = draw(st.lists(st.sampled_from(HEADERS), min_size=ncol, max_size=ncol))
    if draw(st.booleans()):
        header[: min(3, ncol)] = ["user", "item", "rating"][: min(3, ncol)]
    rows = []
    for _ in range(draw(st.integers(0, 12))):
        width = ncol if draw(st.integers(0, 5)) else draw(st.integers(0, ncol + 2))
        good = [str(draw(st.integers(1, 6))), str(draw(st.integers(1, 6))),
                str(draw(st.sampled_from([1, 2, 3, 4, 5, 0.5, 3.5])))]
        cells = [good[k] if k < 3 and draw(st.integers(0, 3)) else draw(token)
                 for k in range(width)]
        rows.append(sep.join(cells))
    nl = draw(st.sampled_from(["\n", "\r\n", "\n\n"]))
    text = sep.join(header) + nl + nl.join(rows) + draw(st.sampled_from(["", nl, nl * 3]))
    enc = draw(st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16"]))
    try:
        raw = text.encode(enc)
    except UnicodeEncodeError:
        raw = text.encode("utf-8")
    if draw(st.integers(0, 4)) == 0:       # byte-level damage
        pos = draw(st.integers(0, max(0, len(raw))))
        raw = raw[:pos] + draw(st.binary(max_size=8)) + raw[pos + draw(st.integers(0, 4)):]
    name = draw(st.sampled_from(["r.csv", "r.tsv", "r.txt", "r.data", "r.csv.gz"]))
    if name.endswith(".gz") and draw(st.booleans()):
        import gzip
        raw = gzip.compress(raw, mtime=0)
    return raw, name


def _md5(p) -> str:
    return hashlib.md5(p.read_bytes()).hexdigest()


def _loads_or_says_why(load, target) -> None:
    """``load()`` returns a dataset keeping the loader's promises, or raises pakd's own
    error; either way ``target`` (the input file) is unchanged."""
    before = _md5(target)
    try:
        _check_loaded(load())
    except PakdError:
        pass
    assert _md5(target) == before


def _check_loaded(ds) -> None:
    """What a loaded table promises: finite ratings inside its scale, one row per pair,
    one ID type per column."""
    r = ds.ratings
    lo, hi = ds.rating_scale
    vals = r["rating"].to_numpy(dtype=float)
    assert np.isfinite(vals).all() and (vals >= lo).all() and (vals <= hi).all()
    assert not r.duplicated(["user", "item"]).any()
    for col in ("user", "item"):
        kinds = {type(v) for v in r[col]}
        assert len(kinds) <= 1, kinds


@given(rating_files(), st.sampled_from([None, ",", "\t", ";", "::", "\\t"]),
       st.sampled_from(["utf-8", "latin-1", "utf-16"]))
def test_generic_loader_loads_or_says_why(tmp_path_factory, file, sep, encoding):
    raw, name = file
    p = tmp_path_factory.mktemp("fuzz") / name
    p.write_bytes(raw)
    _loads_or_says_why(lambda: load_table(p, sep=sep, encoding=encoding), p)


@given(st.binary(max_size=300))
def test_random_bytes_never_crash_the_loader(tmp_path_factory, raw):
    p = tmp_path_factory.mktemp("fuzz") / "r.csv"
    p.write_bytes(raw)
    _loads_or_says_why(lambda: load_table(p), p)


@given(st.lists(st.lists(token, min_size=0, max_size=6), max_size=8),
       st.sampled_from(["ml-100k", "ml-1m"]))
def test_movielens_ratings_files_load_or_say_why(tmp_path_factory, rows, release):
    root = tmp_path_factory.mktemp("ml")
    if release == "ml-100k":
        body = "".join("\t".join(r) + "\n" for r in rows).encode("latin-1", "replace")
        folder = write_ml100k(root, **{"u.data": body})
        target = folder / "u.data"
    else:
        body = "".join("::".join(r) + "\n" for r in rows).encode("latin-1", "replace")
        folder = write_ml1m(root, **{"ratings.dat": body})
        target = folder / "ratings.dat"
    _loads_or_says_why(lambda: load_movielens(release, data_dir=folder, download=False), target)


# ----------------------------------------------------------------------------- settings

SETTING_PATHS = sorted(s.path for s in all_settings())
yaml_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                        st.floats(allow_nan=True, allow_infinity=True), token)
yaml_value = st.recursive(yaml_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(HEADERS + ["x"]), inner,
                                                 max_size=3)), max_leaves=6)


@st.composite
def settings_files(draw) -> bytes:
    if draw(st.integers(0, 5)) == 0:
        return draw(st.binary(max_size=200))
    doc: dict = {}
    for _ in range(draw(st.integers(0, 4))):
        path = draw(st.sampled_from(SETTING_PATHS + ["nonsense", "svd.bogus", "weights"]))
        node = doc
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {}) if isinstance(node.get(part, {}), dict) else {}
        node[parts[-1]] = draw(yaml_value)
    return yaml.safe_dump(doc, allow_unicode=True).encode()


@given(settings_files())
def test_settings_files_resolve_or_say_why(tmp_path_factory, raw):
    p = tmp_path_factory.mktemp("cfg") / "settings.yaml"
    p.write_bytes(raw)
    try:
        build_config(yaml_file=p)
    except PakdError:
        pass
    assert p.read_bytes() == raw


@given(st.sampled_from(SETTING_PATHS), st.one_of(token, st.lists(token, max_size=4).map(",".join)))
def test_command_line_values_parse_or_say_why(path, raw):
    try:
        build_config(overrides={path: parse_cli_value(path, raw)})
    except PakdError:
        pass


# ----------------------------------------------------------------------------- model files

@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    import pandas as pd
    from model_zoo import randomised

    from pakd.data import encode, make_split
    from pakd.data.dataset import Dataset
    from pakd.models import save
    rng = np.random.default_rng(0)
    rows = [(u, i, float(rng.integers(1, 6)), 0) for u in range(12) for i in range(15)
            if rng.random() < 0.6]
    ds = Dataset("tiny", pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"]),
                 (1.0, 5.0))
    enc = encode(ds, make_split(ds.ratings, seed=0))
    stem = tmp_path_factory.mktemp("model") / "m"
    save(randomised("lightweight_model", enc).float(), stem)
    return stem


@st.composite
def damage(draw):
    which = draw(st.sampled_from(["weights", "config"]))
    how = draw(st.sampled_from(["truncate", "flip", "splice", "json"]))
    return which, how, draw(st.integers(0, 10**9)), draw(st.binary(min_size=1, max_size=8)), \
        draw(yaml_value)


@given(damage())
def test_damaged_model_files_load_or_say_why(saved_model, tmp_path_factory, d):
    from pakd.models import load
    which, how, at, junk, value = d
    stem = tmp_path_factory.mktemp("dmg") / "m"
    for suffix in (".safetensors", ".json"):
        stem.with_suffix(suffix).write_bytes(saved_model.with_suffix(suffix).read_bytes())
    target = stem.with_suffix(".safetensors" if which == "weights" else ".json")
    raw = target.read_bytes()
    pos = at % max(1, len(raw))
    if how == "truncate":
        raw = raw[:pos]
    elif how == "flip":
        raw = raw[:pos] + bytes([raw[pos] ^ junk[0]]) + raw[pos + 1:]
    elif how == "splice":
        raw = raw[:pos] + junk + raw[pos:]
    elif which == "config":             # a well-formed JSON with one entry replaced
        cfg = json.loads(raw)
        keys = sorted(cfg)
        cfg[keys[at % len(keys)]] = value
        raw = json.dumps(cfg).encode()
    target.write_bytes(raw)
    try:
        model, _ = load(stem)
    except PakdError:
        return
    # loaded: it must be usable (finite outputs for every user)
    import torch
    with torch.no_grad():
        s = model.score_all(torch.arange(min(3, model.schema.n_users)))
    assert torch.isfinite(s).all()
