"""A saved model's config is checked against its weights file's header before any real
tensor is made (issue 34: a config asking for hidden [1e9, 1e9] allocated 16 GB first)."""
import json
import shutil

import pytest
import torch
from model_zoo import randomised

from pakd import models
from pakd.errors import PakdError
from pakd.models import load, save
from pakd.models.checks import weight_shapes


@pytest.fixture
def saved(tiny_enc, tmp_path):
    stem = tmp_path / "m"
    save(randomised("lightweight_model", tiny_enc).float(), stem)
    return stem


def _edit(stem, change):
    cfg = json.loads(stem.with_suffix(".json").read_text())
    change(cfg)
    stem.with_suffix(".json").write_text(json.dumps(cfg))


def _builds(monkeypatch):
    """The device each `models.build` call made its tensors on."""
    seen = []
    real = models.build

    def spy(*a, **kw):
        seen.append(torch.empty(0).device.type)       # the default device in force
        return real(*a, **kw)

    monkeypatch.setattr(models, "build", spy)
    return seen


def test_a_dimension_other_than_the_weights_is_refused_before_a_real_build(saved, monkeypatch):
    hidden = json.loads(saved.with_suffix(".json").read_text())["arch"]["hidden"]
    _edit(saved, lambda c: c["arch"].__setitem__("hidden", [hidden[0] + 1] + hidden[1:]))
    seen = _builds(monkeypatch)
    with pytest.raises(PakdError, match=r"describes mlp\.0\.weight as \[\d+, \d+\], but"):
        load(saved)
    assert seen == ["meta"]                 # built once, shapes only: nothing allocated


@pytest.mark.parametrize("where,value,words", [
    ("arch.hidden", [10**9, 10**9], "larger than any tensor"),
    ("arch.factors", 10**9, "larger than any tensor"),
    ("arch.hidden", [1e9, 1e9], "TypeError"),
    ("arch.hidden", [-4], "not a model configuration"),
    ("arch.hidden", [2] * 5000, "lists 5,000 entries"),
    ("schema.n_users", 10**12, "larger than any tensor"),
])
def test_huge_or_malformed_sizes_never_reach_an_allocation(saved, monkeypatch, where, value,
                                                           words):
    section, key = where.split(".")
    _edit(saved, lambda c: c[section].__setitem__(key, value))
    seen = _builds(monkeypatch)
    with pytest.raises(PakdError, match=words):
        load(saved)
    assert set(seen) <= {"meta"}


def test_vocabulary_of_a_field_is_bounded_by_the_weights(saved, monkeypatch):
    _edit(saved, lambda c: c["schema"]["fields"][0].__setitem__("vocab_size", 10**12))
    seen = _builds(monkeypatch)
    with pytest.raises(PakdError, match=r"schema\.fields\[0\]\.vocab_size"):
        load(saved)
    assert seen == []


def test_a_matching_config_loads_as_before(saved, monkeypatch):
    seen = _builds(monkeypatch)
    model, cfg = load(saved)
    assert seen == ["meta", "cpu"] and cfg["kind"] == "lightweight_model"


@pytest.mark.parametrize("text,words", [("", "is empty"), ("{", "not valid JSON"),
                                        ("[]", "JSON list"), ('{"kind": "svd"}', "no 'arch'")])
def test_unreadable_configs_are_named(saved, text, words):
    saved.with_suffix(".json").write_text(text)
    with pytest.raises(PakdError, match=words):
        load(saved)


def test_weights_header_is_read_alone_and_checked(saved, tmp_path):
    shapes = weight_shapes(saved.with_suffix(".safetensors"))
    assert shapes and all(d in ("F32", "I32", "I64") for d, _ in shapes.values())
    w = tmp_path / "w.safetensors"
    shutil.copy(saved.with_suffix(".safetensors"), w)
    raw = w.read_bytes()
    w.write_bytes((1 << 62).to_bytes(8, "little") + raw[8:])       # a header of 2^62 bytes
    with pytest.raises(PakdError, match="header claims"):
        weight_shapes(w)
    n = int.from_bytes(raw[:8], "little")
    head = json.loads(raw[8:8 + n])
    name = next(k for k in head if k != "__metadata__")
    head[name]["shape"] = [10**9, 10**9]                            # bytes it does not hold
    new = json.dumps(head).encode()
    w.write_bytes(len(new).to_bytes(8, "little") + new + raw[8 + n:])
    with pytest.raises(PakdError, match="does not describe bytes"):
        weight_shapes(w)


@pytest.mark.parametrize("value", [float("inf"), float("nan"), [1e400]])
def test_non_finite_numbers_in_a_config_are_refused(saved, value):
    """Found by the fuzz benchmark: item_rows = inf passed the checks and crashed the index
    check with an OverflowError."""
    _edit(saved, lambda c: c["arch"].__setitem__("item_rows", value))
    with pytest.raises(PakdError, match="not a finite number"):
        load(saved)
