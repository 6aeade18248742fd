"""The `pakd` command. Thin: parse options, resolve the config, call a stage.

Every setting in `pakd.config` is an option of the subcommands that use it; ``--help``
lists them with their defaults. Underscore spellings (``--pruning_ratio``) are accepted.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .config import (RunConfig, build_config, dump_yaml, flag_aliases, iter_settings,
                     load_run_config, parse_cli_value)
from .errors import PakdError
from .runs import log, seed_everything, set_threads, setup_logging, write_run_config

_TOP = ""  # section key of the top-level settings (seed, threads, quiet, profile)


def _section(path: str) -> str:
    return path.split(".")[0] if "." in path else _TOP


def add_settings(p: argparse.ArgumentParser, sections: list[str]) -> None:
    """Add one option per setting in ``sections`` ("" = top-level settings)."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    defaults = RunConfig().model_dump()
    used = {s for a in p._actions for s in a.option_strings}
    for path, flag, info in iter_settings():
        sec = _section(path)
        if sec not in sections:
            continue
        g = groups.get(sec)
        if g is None:
            g = groups[sec] = p.add_argument_group(f"{sec or 'general'} settings")
        default = defaults
        for part in path.split("."):
            default = default[part]
        if flag in used:  # two sections share a short flag: spell this one out
            flag = "--" + path.replace(".", "-").replace("_", "-")
        flags = [flag] + (["-q"] if flag == "--quiet" else [])
        flags += [a for a in flag_aliases(info) if a not in used]
        for f in list(flags):
            if f.startswith("--") and "-" in f[2:]:
                flags.append("--" + f[2:].replace("-", "_"))
        used.update(flags)
        kw = dict(dest="set__" + path.replace(".", "__"), default=argparse.SUPPRESS,
                  help=f"{info.description} (default: {_show(default)})")
        if info.annotation is bool:
            kw.update(nargs="?", const="true", metavar="BOOL")
        else:
            kw.update(metavar=path.split(".")[-1].upper())
        g.add_argument(*flags, **kw)


def _show(v) -> str:
    if isinstance(v, list):
        return ",".join(map(str, v))
    if isinstance(v, dict):
        return ",".join(f"{k}={x}" for k, x in v.items()) or "none"
    return str(v)


def _overrides(args: argparse.Namespace) -> dict:
    out = {}
    for dest, raw in vars(args).items():
        if dest.startswith("set__"):
            path = dest[5:].replace("__", ".")
            out[path] = parse_cli_value(path, raw)
    return out


def _resolve(args, *, run_dir: Path | None) -> RunConfig:
    base = load_run_config(run_dir) if run_dir is not None else None
    ov = _overrides(args)
    return build_config(base=base, yaml_file=getattr(args, "config", None), overrides=ov,
                        profile=ov.get("profile"))


def _run_dir_arg(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--run", "--out", dest="run_dir", required=required, metavar="RUN",
                   help="run directory (created if missing); stages read and write artefacts here")


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="YAML", help="settings file (unknown keys are rejected)")


def _start(cfg: RunConfig, run_dir: Path | None) -> None:
    setup_logging(cfg.quiet, run_dir)
    set_threads(cfg)
    seed_everything(cfg.seed)
    if run_dir is not None:
        write_run_config(cfg, run_dir)


# ----------------------------------------------------------------------------- commands

def cmd_data_info(args) -> int:
    from . import data as data_mod
    cfg = _resolve(args, run_dir=None)
    setup_logging(cfg.quiet)
    info = data_mod.load(cfg.data, quiet=cfg.quiet).info()
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"{info['dataset']}: {info['ratings']:,} ratings, {info['users']:,} users, "
          f"{info['items']:,} items (rated {info['rated_items']:,}, catalogue "
          f"{info['catalogue_items']:,}); density {info['density']:.4%}")
    print(f"rating scale {info['rating_scale'][0]:g}-{info['rating_scale'][1]:g}, "
          f"mean {info['rating_mean']:.3f}; time {info['time_range']}")
    total = max(info["ratings"], 1)
    print("rating histogram:")
    for k, v in info["rating_histogram"].items():
        print(f"  {k:>4}  {v:>9,}  {'#' * int(50 * v / total)}")
    print("fields:")
    for f in info["fields"]:
        print(f"  {f['name']:<12} {f['side']:<5} {f['kind']:<12} {f['cardinality']:>8,} values")
    for n in info.get("notes", []):
        print("note:", n)
    return 0


def cmd_data_split(args) -> int:
    from .pipeline import stage_split
    run_dir = Path(args.run_dir)
    cfg = _resolve(args, run_dir=run_dir)
    _start(cfg, run_dir)
    stage_split(cfg, run_dir)
    return 0


def cmd_data_download(args) -> int:
    from .data.movielens import RELEASES, default_cache_dir, download_release
    if args.name not in RELEASES:
        raise PakdError(f"unknown release {args.name!r}; choose one of {', '.join(RELEASES)}")
    setup_logging(False)
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    path = download_release(RELEASES[args.name], cache, base_url=args.base_url)
    print(path)
    return 0


def cmd_config_show(args) -> int:
    run_dir = Path(args.run_dir) if args.run_dir else None
    cfg = _resolve(args, run_dir=run_dir)
    sys.stdout.write(dump_yaml(cfg))
    return 0


def _stage_cfg(args) -> tuple[RunConfig, Path]:
    run_dir = Path(args.run_dir)
    cfg = _resolve(args, run_dir=run_dir if (run_dir / "run.yaml").is_file() else None)
    _start(cfg, run_dir)
    if not (run_dir / "split.csv").is_file():
        from .pipeline import stage_split
        stage_split(cfg, run_dir)
    return cfg, run_dir


def _run_stage(args, stage: str, summary: str | None = None) -> int:
    """Run one pipeline stage on ``--run`` and print its Markdown summary (unless quiet)."""
    from . import pipeline
    cfg, run_dir = _stage_cfg(args)
    getattr(pipeline, f"stage_{stage}")(cfg, run_dir)
    if summary and not cfg.quiet:
        print((run_dir / summary).read_text())
    return 0


def cmd_train(args) -> int:
    return _run_stage(args, "train")


def cmd_ensemble(args) -> int:
    return _run_stage(args, "ensemble", "teachers.md")


def cmd_fisher(args) -> int:
    return _run_stage(args, "fisher", "analysis_results/ensemble_fisher_analysis_summary.md")


def cmd_distill(args) -> int:
    return _run_stage(args, "distill", "analysis_results/pakd_experiment_summary.md")


def cmd_recommend(args) -> int:
    from .recommend import recommend
    setup_logging(True)
    for line in recommend(args.model, args.user, k=args.k, run_dir=args.run,
                          include_seen=args.include_seen):
        print(line)
    return 0


def cmd_run(args) -> int:
    from .pipeline import run_all
    run_dir = Path(args.run_dir)
    cfg = _resolve(args, run_dir=run_dir if (run_dir / "run.yaml").is_file() else None)
    _start(cfg, run_dir)
    run_all(cfg, run_dir)
    return 0


# ----------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pakd", description="Compress recommender ensembles into small, fast students: "
        "teachers, Fisher analysis, pruning-aware distillation, honest reports.")
    p.add_argument("--version", action="version", version=f"pakd {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="inspect, download and split datasets")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    info = dsub.add_parser("info", help="counts, rating histogram and fields of a dataset")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    _config_arg(info)
    add_settings(info, [_TOP, "data"])
    info.set_defaults(func=cmd_data_info)

    split = dsub.add_parser("split", help="write a seeded train/valid/test split to RUN/split.csv")
    _run_dir_arg(split)
    _config_arg(split)
    add_settings(split, [_TOP, "data", "split"])
    split.set_defaults(func=cmd_data_split)

    dl = dsub.add_parser("download", help="download a MovieLens release (MD5-checked)")
    dl.add_argument("name", help="release name, e.g. ml-1m")
    dl.add_argument("--cache-dir", help="target folder (default $PAKD_CACHE or ~/.cache/pakd)")
    dl.add_argument("--base-url", default="https://files.grouplens.org/datasets/movielens",
                    help="mirror to download from")
    dl.set_defaults(func=cmd_data_download)

    conf = sub.add_parser("config", help="show the resolved settings")
    csub = conf.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = csub.add_parser("show", help="print the resolved settings as YAML")
    _run_dir_arg(show, required=False)
    _config_arg(show)
    add_settings(show, sorted({_section(pth) for pth, _, _ in iter_settings()}))
    show.set_defaults(func=cmd_config_show)

    train = sub.add_parser("train", help="train teacher models (SVD, xDeepFM, AutoInt) into "
                           "RUN/teachers/")
    _run_dir_arg(train)
    _config_arg(train)
    add_settings(train, [_TOP, "data", "split", "eval", "train", "svd", "xdeepfm", "autoint",
                         "ensemble"])
    train.set_defaults(func=cmd_train)

    ens = sub.add_parser("ensemble", help="combine trained teachers into the ensemble teacher; "
                         "writes RUN/teachers.json and teachers.md")
    _run_dir_arg(ens)
    _config_arg(ens)
    add_settings(ens, [_TOP, "data", "eval", "ensemble"])
    ens.set_defaults(func=cmd_ensemble)

    fis = sub.add_parser("fisher", help="Fisher information of the teachers per layer, structure "
                         "and task, checked against measured damage")
    _run_dir_arg(fis)
    _config_arg(fis)
    add_settings(fis, [_TOP, "data", "eval", "fisher"])
    fis.set_defaults(func=cmd_fisher)

    dis = sub.add_parser("distill", help="prune while distilling the teacher into a student, "
                         "with baselines, across pruning ratios")
    _run_dir_arg(dis)
    _config_arg(dis)
    add_settings(dis, [_TOP, "data", "eval", "ensemble", "distill"])
    dis.set_defaults(func=cmd_distill)

    rec = sub.add_parser("recommend", help="a user's top-K titles from a saved model")
    rec.add_argument("--model", required=True, help="saved model (e.g. "
                     "RUN/models/saved/best_student_model.safetensors)")
    rec.add_argument("--user", required=True, help="original user ID")
    rec.add_argument("-k", type=int, default=10, help="how many items (default 10)")
    rec.add_argument("--run", help="run directory whose split marks items the user has seen "
                     "(default: found from the model path)")
    rec.add_argument("--include-seen", action="store_true", help="do not skip seen items")
    rec.set_defaults(func=cmd_recommend)

    run = sub.add_parser("run", help="the whole pipeline: split -> teachers -> ensemble -> "
                         "Fisher -> PAKD sweep -> report")
    _run_dir_arg(run)
    _config_arg(run)
    add_settings(run, sorted({_section(pth) for pth, _, _ in iter_settings()}))
    run.set_defaults(func=cmd_run)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PakdError as e:
        log.debug("error", exc_info=True)
        print(f"pakd: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pakd: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
