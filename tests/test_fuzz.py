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


# ----------------------------------------------------------------------------- issue 34:
# compressed files, raw YAML text, configs against weights, weights headers, HTTP bodies

@st.composite
def gzip_files(draw) -> bytes:
    """A gzip of a small rating table, repeated until it inflates far past its size
    (a bomb when the inflation cap is lowered), cut short, doubled, spliced, or random."""
    import gzip
    body = "user,item,rating\n" + "".join(f"{draw(st.integers(1, 5))},{draw(st.integers(1, 5))},"
                                          f"{draw(st.sampled_from(['1', '3', '5', 'x', '']))}\n"
                                          for _ in range(draw(st.integers(0, 6))))
    raw = body.encode() * draw(st.sampled_from([1, 1, 10, 2000]))
    gz = gzip.compress(raw, mtime=0)
    how = draw(st.sampled_from(["plain", "cut", "double", "splice", "random", "empty"]))
    if how == "cut":
        gz = gz[: draw(st.integers(0, len(gz)))]
    elif how == "double":
        gz = gz + gz
    elif how == "splice":
        pos = draw(st.integers(0, len(gz)))
        gz = gz[:pos] + draw(st.binary(min_size=1, max_size=8)) + gz[pos:]
    elif how == "random":
        gz = b"\x1f\x8b\x08\x00" + draw(st.binary(max_size=64))
    elif how == "empty":
        gz = b""
    return gz


@given(gzip_files(), st.sampled_from([4096, 1 << 26]))
def test_gzip_files_load_or_say_why(tmp_path_factory, gz, floor):
    """Bounded: with the inflation floor at 4 KB, the repeated tables are bombs and must be
    refused with pakd's error, never read whole."""
    from unittest import mock

    from pakd import limits
    p = tmp_path_factory.mktemp("gz") / "r.csv.gz"
    p.write_bytes(gz)
    with mock.patch.object(limits, "INFLATE_FLOOR", floor):
        _loads_or_says_why(lambda: load_table(p), p)


@given(st.integers(1, 6).flatmap(lambda n: st.lists(
    st.sampled_from(["1", "2", "2018-09-24", "x" * 300, "9" * 500, '"', "", "a|b"]),
    min_size=n, max_size=n)), st.integers(1, 8))
def test_long_fields_and_lines_are_refused_or_loaded(tmp_path_factory, cells, rows):
    """The field and line caps (lowered to 256 characters and 4 KB here) refuse long values
    with pakd's error, quoting at most a short prefix."""
    from unittest import mock

    from pakd import limits
    from pakd.data import io as data_io
    p = tmp_path_factory.mktemp("long") / "r.csv"
    p.write_text("user,item,rating,timestamp\n" + "".join(
        ",".join([str(r), str(r), "3"] + cells[:1]) + "\n" for r in range(rows)) +
        ",".join(cells) + "\n")
    with mock.patch.object(data_io, "MAX_FIELD_CHARS", 256), \
            mock.patch.object(limits, "MAX_LINE_BYTES", 4096):
        try:
            _check_loaded(load_table(p))
        except PakdError as e:
            assert "9" * 100 not in str(e) and "x" * 100 not in str(e)


YAML_PIECES = ["seed: 1\n", "a: &x [1, 2]\n", "b: *x\n", "c: {<<: *x}\n", "d: !!python/object:os.system\n",
               "e: " + "[" * 40 + "]" * 40 + "\n", "svd:\n  epochs: &e 3\n", "xdeepfm:\n  epochs: *e\n",
               "profile: quick\n", "- 1\n", "f: !!binary aGk=\n", "g: [*x, *x, *x]\n", "\t\n",
               "distill:\n  pruning_ratios: [0.5]\n", "? [1, 2]\n: 3\n", "h: &y {a: 1}\n",
               "i: *nope\n", "%YAML 1.1\n---\n", "j: 1e999\n", "seed: 99999999999999999999\n"]


@given(st.lists(st.sampled_from(YAML_PIECES), max_size=6))
def test_settings_text_with_aliases_tags_and_nesting_resolves_or_says_why(tmp_path_factory, parts):
    p = tmp_path_factory.mktemp("yaml") / "s.yaml"
    raw = "".join(parts).encode()
    p.write_bytes(raw)
    try:
        build_config(yaml_file=p)
    except PakdError:
        pass
    assert p.read_bytes() == raw


config_value = st.one_of(st.integers(-3, 10**13), st.floats(allow_nan=True), st.none(),
                         st.booleans(), st.text(max_size=4),
                         st.lists(st.integers(-2, 10**10), max_size=5),
                         st.just([1] * 200))


@given(st.sampled_from(["arch", "schema", "fields"]), st.integers(0, 50), config_value)
def test_configs_that_disagree_with_their_weights_are_refused_early(saved_model, tmp_path_factory,
                                                                      where, at, value):
    """Any edit of a dimension is either harmless (the model still matches its weights) or
    refused by the header check - never built first (a 10^13-row table would be)."""
    from pakd.models import load
    stem = tmp_path_factory.mktemp("cfg") / "m"
    for suffix in (".safetensors", ".json"):
        stem.with_suffix(suffix).write_bytes(saved_model.with_suffix(suffix).read_bytes())
    cfg = json.loads(stem.with_suffix(".json").read_text())
    node = {"arch": cfg["arch"], "schema": cfg["schema"],
            "fields": cfg["schema"]["fields"][at % len(cfg["schema"]["fields"])]}[where]
    keys = sorted(node)
    node[keys[at % len(keys)]] = value
    stem.with_suffix(".json").write_text(json.dumps(cfg))
    try:
        model, _ = load(stem)
    except PakdError:
        return
    assert model.n_params() == sum(p.numel() for p in model.parameters())


@given(st.integers(0, 2**64 - 1), st.dictionaries(
    st.sampled_from(["w", "__metadata__", "x"]), st.fixed_dictionaries({
        "dtype": st.sampled_from(["F32", "I64", "F64", "nope"]),
        "shape": st.lists(st.integers(-1, 10**12), max_size=3),
        "data_offsets": st.lists(st.integers(-1, 10**12), min_size=2, max_size=2)}),
    max_size=3), st.binary(max_size=64))
def test_weights_headers_are_checked_before_reading(saved_model, tmp_path_factory, n, index, tail):
    from pakd.models import load
    stem = tmp_path_factory.mktemp("st") / "m"
    stem.with_suffix(".json").write_bytes(saved_model.with_suffix(".json").read_bytes())
    head = json.dumps(index).encode()
    length = n if n % 3 == 0 else len(head)
    stem.with_suffix(".safetensors").write_bytes(length.to_bytes(8, "little") + head + tail)
    with pytest.raises(PakdError):
        load(stem)


@pytest.fixture(scope="module")
def tiny_service(saved_model):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from pakd.deploy.service import create_app, load_served
    from pakd.models import load
    model, _ = load(saved_model)
    (saved_model.parent / "m.catalog.json").write_text(json.dumps(
        {"user_ids": list(range(model.schema.n_users)),
         "item_ids": list(range(model.schema.n_items)), "titles": None}))
    return TestClient(create_app(load_served(saved_model, k=5), max_batch=20))


json_value = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                                    st.floats(), st.text(max_size=5)),
                          lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                  st.dictionaries(st.text(max_size=5), inner,
                                                                  max_size=3)), max_leaves=10)


@st.composite
def http_bodies(draw) -> bytes:
    kind = draw(st.sampled_from(["json", "pairs", "deep", "bytes", "strings"]))
    if kind == "json":
        return json.dumps({"pairs": draw(json_value)}).encode()
    if kind == "pairs":
        return json.dumps({"pairs": draw(st.lists(st.lists(st.one_of(
            st.integers(-5, 20), st.text(max_size=3), st.booleans(), st.none()),
            max_size=3), max_size=30))}).encode()
    if kind == "deep":
        n = draw(st.integers(0, 5000))
        return b'{"pairs": ' + b"[" * n + b"]" * draw(st.integers(0, n)) + b"}"
    if kind == "strings":
        return b'["' + draw(st.binary(max_size=200)).replace(b'"', b'\\"') + b'"]'
    return draw(st.binary(max_size=300))


@given(http_bodies(), st.sampled_from(["application/json", "text/plain", "",
                                       "application/json; charset=latin-1", "x/y+json"]),
       st.dictionaries(st.sampled_from(["user", "k", "model", "include_seen", "limit"]),
                       st.one_of(st.text(max_size=8), st.integers(-10, 10**6).map(str)),
                       max_size=4))
def test_http_requests_never_answer_500(tiny_service, body, ctype, params):
    r = tiny_service.post("/score", content=body, headers={"content-type": ctype} if ctype else {})
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert set(r.json()) == {"error"} and set(r.json()["error"]) == {"code", "message"}
    for path in ("/recommend", "/users"):
        r = tiny_service.get(path, params=params)
        assert r.status_code < 500, r.text
        if r.status_code >= 400:
            assert set(r.json()["error"]) == {"code", "message"}
