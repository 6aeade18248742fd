"""Resolving settings: defaults < profile < run.yaml < YAML file < command line.

Also the one table of names: each setting's flag (`setting_flags`), the original
experiment's spellings (`ORIGINAL`), and keys renamed since older run directories were
written (`RENAMED`), so an old ``run.yaml`` still loads.
"""
from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import ConfigError
from ..limits import MAX_NESTING, MAX_SETTINGS_BYTES, quote
from .defaults import TEACHERS
from .profiles import PROFILES, for_data
from .sections import RunConfig

log = logging.getLogger("pakd")

# The original experiment's spellings (../shared/origin), top-level in YAML, as flags on
# every command that has the setting. One spelling may set the same concept in two stages:
# `teacher_type: svd` analyses and distils the SVD member.
ORIGINAL: dict[str, tuple[str, ...]] = {
    "teacher_type": ("fisher.teacher", "distill.teacher"),
    "teacher": ("fisher.teacher", "distill.teacher"),
    "target_layers": ("fisher.target_layers",),
    "focus_tasks": ("fisher.focus_tasks",),
    "pruning_ratio": ("distill.budgets",),
    "distill_tasks": ("distill.distill_tasks",),
    "student": ("distill.student",),
    "algorithms": ("ensemble.algorithms",),
    "weights": ("ensemble.weights",),
    "tasks": ("ensemble.tasks",),
}

# Old key -> new key, for YAML files and run.yaml written by earlier versions.
RENAMED: dict[str, str] = {
    "distill.ratios": "distill.budgets",      # pruning ratios: a ratio is a budget entry
    "distill.rating_weight": "distill.kd_rating_weight",
    "distill.ranking_weight": "distill.kd_ranking_weight",
    "distill.feature_weight": "distill.kd_feature_weight",
    "distill.label_weight": "distill.label_loss_weight",
    "distill.student_factors": "lightweight.factors",
    "distill.student_rank_factors": "lightweight.rank_factors",
    "distill.student_hidden": "lightweight.hidden",
    # the lightweight student's section was `student` until the tower student
    **{f"student.{k}": f"lightweight.{k}" for k in ("factors", "rank_factors", "hidden",
                                                    "side_fields", "item_coverage")},
    "distill.bench_batch": "bench.batch",
    "distill.bench_seconds": "bench.seconds",
    "train.resume": "resume",
    **{f"{m}.{old}": f"{m}.{old.replace('_weight', '_loss_weight')}"
       for m in TEACHERS for old in ("rating_weight", "ranking_weight")},
}

_MAPS = ("columns", "feature_kinds")   # dict-valued settings: replaced whole, not merged


# ----------------------------------------------------------------------------- the names

@dataclass(frozen=True)
class Setting:
    path: str              # dotted, e.g. "distill.pruning_ratios"
    flag: str              # the one flag, e.g. "--pruning-ratios"
    aliases: tuple[str, ...]
    info: Any              # pydantic FieldInfo

    @property
    def section(self) -> str:
        return self.path.split(".")[0] if "." in self.path else ""


def _walk(model: type[BaseModel], prefix: str = ""):
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _walk(ann, f"{prefix}{name}.")
        else:
            yield prefix + name, info


@lru_cache(maxsize=1)
def settings() -> tuple[Setting, ...]:
    """Every leaf setting with its flag; raises if two settings would share a flag."""
    out, seen = [], {}
    for path, info in _walk(RunConfig):
        extra = info.json_schema_extra or {}
        flag = extra.get("flag") or "--" + path.replace(".", "-").replace("_", "-")
        if flag in seen:
            raise RuntimeError(f"settings {seen[flag]} and {path} share the flag {flag}")
        seen[flag] = path
        out.append(Setting(path, flag, tuple(extra.get("aliases", ())), info))
    for s in out:
        for a in s.aliases:
            if a in seen:
                raise RuntimeError(f"alias {a} of {s.path} is the flag of {seen[a]}")
    return tuple(out)


def setting(path: str) -> Setting:
    for s in settings():
        if s.path == path:
            return s
    raise KeyError(path)


def spellings(flag: str) -> list[str]:
    """A flag and its underscore spelling (``--pruning-ratio``, ``--pruning_ratio``)."""
    out = [flag]
    if "-" in flag[2:]:
        out.append("--" + flag[2:].replace("-", "_"))
    return out


# ----------------------------------------------------------------------------- resolving

def _format_errors(err: ValidationError, where: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        if e["type"] == "extra_forbidden":
            parent = e["loc"][:-1]
            valid = sorted(_section_fields(parent))
            if not parent:
                valid += sorted(ORIGINAL)
            close = difflib.get_close_matches(str(e["loc"][-1]), valid, n=1)
            hint = f" (did you mean {'.'.join(map(str, parent + (close[0],)))}?)" if close else ""
            lines.append(f"unknown setting '{loc}'{hint}; valid keys here: {', '.join(valid)}")
        else:
            flag = next((s.flag for s in settings() if s.path == loc), None)
            lines.append(f"setting '{loc}'{f' ({flag})' if flag else ''}: {e['msg']} "
                         f"(got {quote(e.get('input'), 60)})")
    return f"invalid settings in {where}:\n  " + "\n  ".join(lines)


def _section_fields(path: tuple) -> list[str]:
    model: type[BaseModel] = RunConfig
    for p in path:
        model = model.model_fields[p].annotation
    return list(model.model_fields)


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in _MAPS:
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _set_path(d: dict, path: str, value) -> None:
    keys = path.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    d[keys[-1]] = value


def _pop_path(d: dict, path: str):
    keys = path.split(".")
    for k in keys[:-1]:
        d = d.get(k)
        if not isinstance(d, dict):
            return None, False
    if keys[-1] in d:
        return d.pop(keys[-1]), True
    return None, False


_MISSING = object()


def _get_path(d: dict, path: str, default=_MISSING):
    for k in path.split("."):
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def normalise(data: dict, where: str) -> dict:
    """Map the original spellings (top-level keys) and renamed keys to today's settings."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for old, new in RENAMED.items():
        value, found = _pop_path(data, old)
        if found:
            log.debug("%s: setting %s is now called %s", where, old, new)
            _set_path(data, new, value)
    for key, paths in ORIGINAL.items():
        if key in data and not isinstance(data[key], dict):
            value = data.pop(key)
            for p in paths:
                _set_path(data, p, value if p != "distill.budgets" or isinstance(value, list)
                          else [value])
    _sizes(data.get("distill"))
    return data


def _sizes(d: dict | None) -> None:
    """Student sizes were three settings until they became ``distill.budgets``: pruning
    ratios (0.4 stays 0.4, a ratio), one ratio, and size budgets in percent (3 -> 3%); an
    ablation flag became the budget it runs at."""
    if not isinstance(d, dict):
        return
    ratio = d.pop("pruning_ratio", None)
    ratios = d.pop("pruning_ratios", None)
    shares = d.pop("size_budgets", None)
    if "budgets" not in d:
        if shares:
            d["budgets"] = [f"{float(b):g}%" for b in shares]
        elif ratio is not None:
            d["budgets"] = [str(ratio)]
        elif ratios:
            d["budgets"] = [str(r) for r in ratios]
    if isinstance(d.get("ablation"), bool):
        d["ablation"] = None if not d["ablation"] else _budget_for_ablation(d)


def _budget_for_ablation(d: dict):
    """An old ``ablation: true`` ran at the largest pruning ratio: the smallest budget."""
    from ..distill.budgets import parse
    budgets = [parse(b) for b in d.get("budgets") or []]
    ratios = [b for b in budgets if b.kind == "ratio"]
    if ratios:
        return max(ratios, key=lambda b: b.value).label
    if budgets:
        return min(budgets, key=lambda b: b.value).label
    return setting("distill.ablation").info.default


def _read_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.exists() and not p.is_symlink():
        raise ConfigError(f"config file {p} not found")
    loaded = _yaml_mapping(p)
    return normalise(loaded, str(p))


class _SettingsLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases and with bounded nesting. An alias repeats a
    node by reference: nine levels of ten aliases each (a 1 KB "billion laughs" file)
    expand to 10^9 values when the settings are walked. Settings never need one, so any
    alias is refused; nesting deeper than MAX_NESTING (the composer recurses per level)
    too."""

    depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise ConfigError(f"{self.name}, line {mark.line + 1}: YAML aliases (*name) are "
                              "not accepted in settings files (a file of aliases can expand "
                              "to billions of values); write each value out")
        self.depth += 1
        if self.depth > MAX_NESTING:
            mark = self.peek_event().start_mark
            raise ConfigError(f"{self.name}, line {mark.line + 1}: settings nested deeper "
                              f"than {MAX_NESTING} levels; pakd's settings are at most three "
                              "levels deep")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def load_settings_yaml(text: str, name: str = "<settings>"):
    """``yaml.safe_load`` with `_SettingsLoader` (no aliases, bounded nesting)."""
    loader = _SettingsLoader(text)
    loader.name = name
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _yaml_mapping(p: Path) -> dict:
    """A YAML file's mapping, or a ConfigError that says what is wrong with the file."""
    from ..limits import read_input
    raw = read_input(p, limit=MAX_SETTINGS_BYTES, what="settings file",
                     fix="a settings file holds a few dozen settings: check that this is "
                         "the right file")
    try:
        loaded = load_settings_yaml(raw.decode("utf-8"), str(p)) or {}
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                          f"{e.start}); save the settings file as UTF-8") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p} is not valid YAML: {quote(str(e), 300)}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{p} must hold a mapping of settings")
    return loaded


def build_config(*, base: dict | None = None, yaml_file: str | Path | None = None,
                 overrides: dict[str, Any] | None = None, profile: str | None = None,
                 size: tuple[int, int] | None = None) -> RunConfig:
    """Resolve settings: defaults < profile < base (a run's run.yaml) < YAML file < overrides.

    ``overrides`` maps dotted paths (``split.method``) to values. ``size`` (train ratings,
    catalogue items of the run's split) fits the profile to the data
    (`pakd.config.profiles.for_data`) before anything the user set is laid over it.
    """
    data: dict = {}
    if base:
        data = _deep_merge(data, normalise(base, "the run's saved settings"))
    if yaml_file:
        data = _deep_merge(data, _read_yaml(yaml_file))
    over: dict = {}
    for path, v in (overrides or {}).items():
        _set_path(over, path, v)
    data = _deep_merge(data, over)
    prof = profile or data.get("profile") or "default"
    if not isinstance(prof, str) or prof not in PROFILES:
        raise ConfigError(f"unknown profile {prof!r}; choose one of {', '.join(PROFILES)}")
    prof_over: dict = {}
    for path, v in PROFILES[prof].items():   # the profile only fills what the user did not set
        _set_path(prof_over, path, v)
    if size is not None:
        limit = {m: int(_get_path(data, f"{m}.max_items",
                                  setting(f"{m}.max_items").info.default))
                 for m in ("ease", "knn", "knn_interp")}
        fitted = for_data(prof, *size, ease_max_items=limit["ease"],
                          knn_max_items=limit["knn"],
                          knn_interp_max_items=limit["knn_interp"])
        for path, v in fitted.items():
            _set_path(prof_over, path, v)
        mine = {p: v for p, v in fitted.items() if _get_path(data, p) is _MISSING}
        if mine:
            log.info("settings fitted to %s train ratings over %s items: %s", f"{size[0]:,}",
                     f"{size[1]:,}", ", ".join(f"{p} {v}" for p, v in mine.items()))
    data = _deep_merge(prof_over, data)
    data["profile"] = prof
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        where = yaml_file or "the command line / run.yaml"
        raise ConfigError(_format_errors(e, str(where))) from None


class _PlainDumper(yaml.SafeDumper):
    """Never writes an anchor or alias (run.yaml is read back by `_SettingsLoader`)."""

    def ignore_aliases(self, data):
        return True


def dump_yaml(cfg: RunConfig) -> str:
    return yaml.dump(cfg.model_dump(mode="json"), Dumper=_PlainDumper, sort_keys=False)


def load_run_config(path: str | Path) -> dict | None:
    """The raw mapping of a ``run.yaml`` (None when there is none)."""
    p = Path(path)
    if not p.is_file():
        return None
    return _yaml_mapping(p)


# ----------------------------------------------------------------------------- CLI values

def _base_type(ann):
    origin = get_origin(ann)
    if origin is None:
        return ann
    if origin in (list, dict, Literal):
        return origin
    args = [a for a in get_args(ann) if a is not type(None)]
    return _base_type(args[0]) if args else ann


def parse_cli_value(path: str, raw: str) -> Any:
    """Turn a command-line string into the shape the setting expects (lists, maps, None)."""
    info = setting(path).info
    kind = _base_type(info.annotation)
    if raw is None:
        return None
    if isinstance(raw, str) and raw.lower() in ("none", "null") and \
            type(None) in get_args(info.annotation):
        return None
    if kind is list:
        return [x.strip() for x in str(raw).split(",") if x.strip()]
    if kind is dict:
        out = {}
        for pair in str(raw).split(","):
            if not pair.strip():
                continue
            if "=" not in pair:
                raise ConfigError(f"{path}: expected key=value pairs, got {pair!r}")
            k, v = pair.split("=", 1)
            out[k.strip()] = v.strip()
        return out
    return raw
