"""The `pakd` command. Thin: parse options, resolve the config, call a recipe.

Every setting has one flag, the same in every command that takes it (`pakd.config`); a
command's ``--help`` lists its own settings first, then the general ones, and
``--help-all`` adds the shared data/split/eval sections it also accepts. Underscore
spellings (``--pruning_ratio``) and the original experiment's flags (``--teacher_type``)
are accepted too.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .errors import PakdError

# command -> (its own sections, shown first; sections it also accepts, shown by --help-all)
SECTIONS: dict[str, tuple[list[str], list[str]]] = {
    "data info": (["data"], []),
    "data split": (["data", "split"], []),
    "train": (["train", "svd", "xdeepfm", "autoint", "ease", "als", "lightgcn", "sasrec",
              "knn", "uknn", "knn_interp"],
              ["data", "split", "eval", "ensemble"]),
    "ensemble": (["ensemble"], ["data", "split", "eval"]),
    "fisher": (["fisher"], ["data", "split", "eval", "ensemble"]),
    "distill": (["distill", "student", "lightweight", "bench"], ["data", "split", "eval", "ensemble"]),
    "report": ([], []),
    "run": (["split", "train", "ensemble", "fisher", "distill"],
            ["data", "eval", "svd", "xdeepfm", "autoint", "ease", "als", "lightgcn", "sasrec",
             "knn", "uknn", "knn_interp", "student", "lightweight", "bench"]),
    "config show": (["data", "split", "eval", "train", "svd", "xdeepfm", "autoint", "ease", "als",
                     "lightgcn", "sasrec", "knn", "uknn", "knn_interp",
                     "ensemble", "fisher", "student", "lightweight", "distill", "bench", "tune",
                     "serve", "export"],
                    []),
    "recommend": ([], []),
    "export": (["export"], []),
    "serve": (["serve"], []),
    "update": ([], []),
    "data download": ([], []),
    "tune": (["tune"], []),
}
# the general settings each command uses (a command offers no setting it would ignore)
_EVERY = ("seed", "threads", "quiet", "resume", "profile")
GENERAL: dict[str, tuple[str, ...]] = {
    "data info": ("quiet",), "data split": ("seed", "quiet", "profile"),
    "train": _EVERY, "ensemble": ("seed", "threads", "quiet", "profile"), "fisher": _EVERY,
    "distill": _EVERY, "report": ("quiet",), "run": _EVERY, "config show": _EVERY,
    "recommend": ("quiet",), "export": ("threads", "quiet"), "serve": ("threads", "quiet"),
    "update": ("quiet",), "data download": ("quiet",), "tune": ("threads", "quiet", "resume"),
}
_SHOW_ALL = False   # set by --help-all


def _show(v) -> str:
    if isinstance(v, list):
        return ",".join(map(str, v)) or "(empty)"
    if isinstance(v, dict):
        return ",".join(f"{k}={x}" for k, x in v.items()) or "none"
    return str(v)


def _metavar(ann) -> str:
    """A short placeholder: the choices when few, else the kind of value."""
    from typing import Literal, get_args, get_origin
    origin, args = get_origin(ann), [a for a in get_args(ann) if a is not type(None)]
    if origin is Literal and len("|".join(map(str, args))) <= 28:
        return "|".join(map(str, args))
    if origin is list or ann is list:
        return "a,b,..."
    if origin is dict:
        return "k=v,..."
    if args and origin is not Literal:
        return _metavar(args[0])
    return {int: "n", float: "x", str: "text", bool: "bool"}.get(ann, "value")


def _formatter(prog):
    return argparse.HelpFormatter(prog, max_help_position=36, width=100)


def add_settings(p: argparse.ArgumentParser, command: str) -> None:
    """One option per setting the command takes; the command's own sections first."""
    from .config import RunConfig, settings, spellings
    own, shared = SECTIONS[command]
    defaults = RunConfig().model_dump()
    sections = own + [""] + shared
    general = GENERAL[command]

    def offered(s) -> bool:
        return s.section in sections and (s.section != "" or s.path in general)

    groups = {}
    for sec in sections:
        title = {"": "general settings"}.get(sec, f"{sec} settings")
        if sec in shared and not _SHOW_ALL:
            continue
        groups[sec] = p.add_argument_group(title)
    taken = {s.path for s in settings() if offered(s)}
    for s in settings():
        if not offered(s):
            continue
        default = defaults
        for part in s.path.split("."):
            default = default[part]
        visible = s.section in groups
        target = groups.get(s.section, p)
        kw = dict(dest="set__" + s.path.replace(".", "__"), default=argparse.SUPPRESS)
        if s.info.annotation is bool:
            kw.update(nargs="?", const="true", metavar="bool")
        else:
            kw.update(metavar=_metavar(s.info.annotation))
        if default is not None:
            text = f"{s.info.description} (default: {_show(default)})"
        else:               # None: the description says what "unset" means, or it is none
            text = s.info.description + ("" if "unset" in s.info.description
                                         else " (default: none)")
        flags = (["-q"] if s.flag == "--quiet" else []) + [s.flag]
        text = text.replace("%", "%%")           # argparse formats help with %
        target.add_argument(*flags, help=text if visible else argparse.SUPPRESS, **kw)
        hidden = spellings(s.flag)[1:]
        if hidden:
            target.add_argument(*hidden, help=argparse.SUPPRESS, **kw)
    # aliases (the original experiment's spellings): each sets every path it names here
    aliases = sorted({a for s in settings() if s.path in taken for a in s.aliases})
    group = p.add_argument_group("aliases (older and original spellings)") if aliases else p
    for alias in aliases:
        paths = [s.path for s in settings() if alias in s.aliases and s.path in taken]
        dest = "alias__" + "|".join(paths)
        group.add_argument(alias, dest=dest, default=argparse.SUPPRESS, metavar="value",
                           help=f"sets {' and '.join(paths)}")
        if spellings(alias)[1:]:
            group.add_argument(*spellings(alias)[1:], dest=dest, default=argparse.SUPPRESS,
                               help=argparse.SUPPRESS)


def _overrides(args: argparse.Namespace) -> dict:
    from .config import parse_cli_value
    out: dict = {}
    for dest, raw in vars(args).items():      # aliases first: a setting's own flag wins
        if dest.startswith("alias__"):
            for path in dest[7:].split("|"):
                out[path] = parse_cli_value(path, raw)
    for dest, raw in vars(args).items():
        if dest.startswith("set__"):
            path = dest[5:].replace("__", ".")
            out[path] = parse_cli_value(path, raw)
    return out


def _resolve(args, rd=None, size=None):
    from .config import build_config, load_run_config
    base = load_run_config(rd.config) if rd is not None else None
    ov = _overrides(args)
    return build_config(base=base, yaml_file=getattr(args, "config", None), overrides=ov,
                        profile=ov.get("profile"), size=size)


def _run_dir_arg(p: argparse.ArgumentParser, required: bool = True,
                 existing: bool = False) -> None:
    p.add_argument("--run", "--out", dest="run_dir", required=required, metavar="dir",
                   help="run directory (" + ("an existing run" if existing else
                                             "created if missing") + ")")


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="yaml", help="settings file (unknown keys are refused)")


def _quiet(args) -> bool:
    """The -q/--quiet setting of a command that takes no other settings."""
    return bool(_resolve(args).quiet)


# run directories this command created: if it fails before writing their run.yaml, they
# are removed again (`_remove_half_made`), so a refused command leaves no folder behind
_CREATED: list = []


def _start(args, write: bool = True, split: str | None = None, existing: bool = False):
    """(config, run directory) of a stage command: settings resolved over the run's
    run.yaml and checked against the run's identity (data, split, seed), the run locked
    for this process, logging and threads set up, the split made (``split``: "always", or
    "missing" when the run has none) with the settings fitted to its size, and only then
    (``write``) the resolved settings written back - a refused command changes nothing in
    the run. ``existing``: the command reads a run's artefacts, so a folder that holds no
    run is refused (and never created)."""
    from .config import build_config, dump_yaml, load_run_config
    from .rundir import RunDir, identity_differences
    from .runtime import log, seed_everything, set_threads, setup_logging
    rd = RunDir(args.run_dir)
    if rd.root.exists() and not rd.root.is_dir():
        raise PakdError(f"--run {rd}: this is a file, not a run directory; give a folder")
    if existing and not RunDir.is_run(rd.root):
        what = "does not exist" if not rd.root.exists() else \
            f"holds no run (no {rd.split_csv.name})"
        raise PakdError(f"--run {rd}: the folder {what}; check the path, or make the run "
                        f"first with pakd run --out {rd} (or pakd train --run {rd})")
    had_config = rd.config.is_file()
    fresh = getattr(args, "fresh", False)
    base = rd if had_config and not fresh else None   # fresh: not the old settings
    cfg = _resolve(args, base)
    if not rd.root.exists():
        _CREATED.append(rd.root)
    _hold(rd.lock().acquire())      # before reading the run's identity: no one changes it now
    if had_config and rd.split_csv.is_file() and not fresh:
        diff = identity_differences(build_config(base=load_run_config(rd.config)), cfg)
        if diff:
            raise PakdError(f"{rd} was made with other settings ({'; '.join(diff)}); its "
                            "artefacts would mix with this command's. Use another --run, "
                            "or add --fresh to start over here (the old run is moved aside, "
                            "not deleted)")
    moved = None
    if fresh and rd.root.exists() and any(p.name != ".lock" for p in rd.root.iterdir()):
        _release_lock()
        moved = rd.set_aside()
        _CREATED.append(rd.root)
        _hold(rd.lock().acquire())
    setup_logging(cfg.quiet, rd.log)
    if moved is not None:
        log.info("--fresh: the previous run in %s was moved to %s", rd, moved)
    set_threads(cfg.threads)
    seed_everything(cfg.seed)
    if split == "always" or (split == "missing" and not rd.split_csv.is_file()):
        from .recipes import split as split_recipe
        s = split_recipe.run(cfg, rd).summary
        # a run's settings follow the size of its split (only settings nobody set: a run
        # that already has run.yaml keeps every value in it)
        cfg = _resolve(args, base, size=(int(s["rows"]["train"]), int(s["items"])))
    if write:
        rd.write_text(rd.config, dump_yaml(cfg))
    return cfg, rd


def _commit(cfg, rd) -> None:
    """Check the settings that need the split (the catalogue size, from split.json), then
    write run.yaml: a command refused here leaves the run's settings as they were."""
    from .config import dump_yaml
    from .scores import check_catalogue_settings
    summary = rd.split_summary()
    if summary.get("items"):
        users = summary.get("users")
        check_catalogue_settings(cfg, int(summary["items"]), int(users) if users else None)
    rd.write_text(rd.config, dump_yaml(cfg))


_LOCKS: list = []


def _hold(lock) -> None:
    _LOCKS.append(lock)


def _release_lock() -> None:
    while _LOCKS:
        _LOCKS.pop().release()


def _remove_half_made() -> None:
    """After a failed command: remove each run directory it created that has no run.yaml
    yet (only a log, a lock, maybe a split it could not finish the settings for)."""
    import logging
    import shutil
    from .rundir import RunDir
    while _CREATED:
        root = _CREATED.pop()
        if not root.is_dir() or RunDir(root).config.is_file():
            continue
        for h in list(logging.getLogger("pakd").handlers):     # let go of RUN/pakd.log
            if isinstance(h, logging.FileHandler) and Path(h.baseFilename).is_relative_to(
                    root.resolve()):
                logging.getLogger("pakd").removeHandler(h)
                h.close()
        shutil.rmtree(root, ignore_errors=True)


def _stage(args, existing: bool = False):
    """Like `_start`, and writes the split first when the run has none; run.yaml is
    written once the settings that need the split are checked. Under torchrun, rank 0 does
    all that while the other ranks wait, then they read what it wrote (`_follow`)."""
    from . import distributed
    if not distributed.is_main():
        distributed.barrier()
        return _follow(args)
    cfg, rd = _start(args, write=False, split="missing", existing=existing)
    _commit(cfg, rd)
    distributed.barrier()
    return cfg, rd


def _follow(args):
    """A torchrun rank other than 0: the settings rank 0 wrote to run.yaml, no lock, no
    log file, no progress bars."""
    from .rundir import RunDir
    from .runtime import seed_everything, set_threads, setup_logging
    rd = RunDir(args.run_dir)
    cfg = _resolve(args, rd)
    cfg.quiet = True
    setup_logging(True)
    set_threads(cfg.threads)
    seed_everything(cfg.seed)
    return cfg, rd


# ----------------------------------------------------------------------------- commands

def cmd_data_info(args) -> int:
    from . import data as data_mod
    from .runtime import setup_logging
    cfg = _resolve(args)
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
    _start(args, split="always")
    return 0


def cmd_data_download(args) -> int:
    from .data.movielens import RELEASES, default_cache_dir, download_release
    from .runtime import setup_logging
    if args.name not in RELEASES:
        raise PakdError(f"unknown release {args.name[:60]!r}; choose one of "
                        f"{', '.join(RELEASES)}")
    quiet = _quiet(args)
    setup_logging(quiet)
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    print(download_release(RELEASES[args.name], cache, base_url=args.base_url, quiet=quiet,
                           allow_insecure=args.allow_insecure,
                           allow_unverified=args.allow_unverified))
    return 0


def cmd_config_show(args) -> int:
    from .config import dump_yaml
    from .rundir import RunDir
    rd = RunDir(args.run_dir) if args.run_dir else None
    cfg = _resolve(args, rd if rd is not None and rd.config.is_file() else None)
    sys.stdout.write(dump_yaml(cfg))
    return 0


def _run_recipe(args, recipe, report=None, existing: bool = False) -> int:
    """Run one recipe on ``--run`` (split first if needed; ``existing``: the run must be
    there already); print its Markdown report."""
    from . import distributed
    cfg, rd = _stage(args, existing=existing)
    recipe.run(cfg, rd)
    if report is not None and not cfg.quiet and distributed.is_main():
        print(report(rd).read_text())
    return 0


# commands that run as several processes under torchrun
_DISTRIBUTED = ("train", "fisher", "distill", "run")


def cmd_train(args) -> int:
    from .recipes import teachers
    if getattr(args, "nproc", None):
        return _launch(args)
    return _run_recipe(args, teachers)


def _launch(args) -> int:
    """``--nproc N``: the same command as N processes under torchrun."""
    from . import distributed
    if distributed.launched():
        raise PakdError("--nproc is for a command started by hand; under torchrun, set the "
                        "number of processes with torchrun --nproc-per-node")
    argv, skip = [], False
    for a in args.argv:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        argv.append(a)
    return distributed.launch(args.nproc, argv)


def cmd_ensemble(args) -> int:
    from .recipes import ensemble
    return _run_recipe(args, ensemble, lambda rd: rd.teachers_md, existing=True)


def cmd_fisher(args) -> int:
    from .recipes import fisher
    if getattr(args, "nproc", None):
        return _launch(args)
    return _run_recipe(args, fisher, lambda rd: rd.fisher_md, existing=True)


def cmd_distill(args) -> int:
    from .recipes import distill
    if getattr(args, "nproc", None):
        return _launch(args)
    if getattr(args, "seeds", None):
        return _each_seed(args, cmd_distill)
    return _run_recipe(args, distill, lambda rd: rd.pakd_md, existing=True)


_CAPS = ("tune.max_params", "tune.max_bytes", "tune.max_latency_ms")


def cmd_tune(args) -> int:
    """A cap flag replaces the cap run.yaml remembers (one cap per study); --resume and
    --final without a cap flag take the study's own."""
    from .config import RunConfig
    from .recipes import tune
    from .tune.study import require
    require()
    ov = _overrides(args)
    given = [p for p in _CAPS if p in ov]
    for p in _CAPS:
        if given and p not in given:
            setattr(args, "set__" + p.replace(".", "__"), "none")
    resume = "resume" in ov and RunConfig.model_validate({"resume": ov["resume"]}).resume
    cfg, rd = _start(args, write=False, existing=True)
    out = tune.run(cfg, rd, storage=args.storage, resume=resume, caps_given=bool(given),
                   final=args.final, commit=lambda: _commit(cfg, rd))
    if not cfg.quiet:
        print((rd.tune_final_md if args.final else rd.tune_front_md).read_text())
    if out.get("chosen_yaml"):
        print(f"chosen settings: {out['chosen_yaml']}")
    return 0


def cmd_report(args) -> int:
    from .recipes import report
    from .rundir import RunDir
    if args.html or args.open:
        root = Path(args.run_dir)
        if not root.is_dir():
            raise PakdError(f"{root} is not a run directory: give the --run of a `pakd run` "
                            "(or of a `pakd run --seeds ...`)")
        if (root / "seeds.json").is_file() and not RunDir.is_run(root):
            from .report.html import write_html       # several seeds: the pooled page
            path = write_html(root)
        else:
            cfg, rd = _start(args, write=False, existing=True)
            report.run(cfg, rd)
            path = rd.report_html
        print(path)
        if args.open:
            import webbrowser
            webbrowser.open(path.resolve().as_uri())
        return 0
    cfg, rd = _start(args, write=False, existing=True)
    print(report.run(cfg, rd))
    return 0


def _each_seed(args, command) -> int:
    """``command`` once per seed of ``--seeds``, each in RUN/seed-<s> with that seed, one
    after another; then the pooled results in RUN."""
    from .recipes import seeds as seeds_recipe
    if "set__seed" in vars(args):
        raise PakdError("give either --seed or --seeds, not both: --seeds runs every seed it "
                        "lists in RUN/seed-<s>")
    for s in args.seeds:
        one = argparse.Namespace(**{**vars(args), "seeds": None, "set__seed": str(s),
                                    "run_dir": str(seeds_recipe.seed_dir(args.run_dir, s))})
        code = command(one)
        _release_lock()
        if code:
            return code
    from . import distributed
    if distributed.is_main():           # under torchrun: rank 0 pools
        out = seeds_recipe.pool(args.run_dir, args.seeds)
        from .report.html import write_html
        page = write_html(args.run_dir)
        if not _overrides(args).get("quiet", False):
            print(seeds_recipe.seeds_markdown(out))
        print(f"HTML report: {page}")
    return 0


def cmd_run(args) -> int:
    from . import distributed
    from .recipes import run_all
    if getattr(args, "nproc", None):
        return _launch(args)
    if getattr(args, "seeds", None):
        return _each_seed(args, cmd_run)
    track = getattr(args, "track", None)
    if track is not None:
        from .report import track as track_mod
        track_mod.require()          # before any work: a missing extra is named at once
    cfg, rd = _stage(args)
    out = run_all(cfg, rd, track=track)
    if distributed.is_main():
        print(out)
        if rd.report_html.is_file():
            print(f"HTML report: {rd.report_html}")
    return 0


def cmd_recommend(args) -> int:
    from .recommend import render, top_items
    from .runtime import setup_logging
    setup_logging(True)
    _quiet(args)                        # checked: a bad -q value is refused like elsewhere
    result = top_items(args.model, args.user, k=args.k, run_dir=args.run,
                       include_seen=args.include_seen)
    sys.stdout.write(render(result, args.format))
    return 0


def cmd_export(args) -> int:
    from .deploy.deployable import load_deployable
    from .deploy.onnx_export import export
    from .deploy.service import default_onnx_dir
    from .runtime import setup_logging
    from .runtime import set_threads
    cfg = _resolve(args)
    quiet = cfg.quiet
    setup_logging(quiet)
    seconds = cfg.export.seconds
    if args.bench_seconds_deprecated is not None:
        from .runtime import log
        log.warning("pakd export --bench-seconds is deprecated: use --export-seconds")
        seconds = args.bench_seconds_deprecated
    threads = set_threads(cfg.threads)     # 0: all cores, for torch and ONNX alike
    dep = load_deployable(args.model, run_dir=args.run)
    out = Path(args.out) if args.out else default_onnx_dir(dep.path)
    meta = export(dep, out, k=args.k, int8=args.int8, threads=threads,
                  bench_seconds=seconds, quiet=quiet)
    p = meta["parity"]
    print(f"exported {dep.name} ({dep.kind}, {dep.model.n_params():,} parameters) to {out}")
    print(f"parity over {p['users']} users: max |score diff| {p['max_abs_score_diff']:.2e}, "
          f"rating {p['max_abs_rating_diff']:.2e} over {p['rating_pairs']:,} pairs; top-{p['k']} "
          f"identical {p['topk_identical']}, tie order only {p['topk_differ_in_ties_only']}; "
          f"top-10 identical {p['top10_identical']}")
    for name, m in meta["measured"].items():
        acc = m["metrics"] or {}
        sp = m["speed"]
        figures = ", ".join(f"{k} {v:.4f}" for k, v in acc.items() if k in ("ndcg@10", "rmse"))
        print(f"  {name:>10}: {figures or 'no run split: accuracy not measured'}; one user "
              f"p50 {sp['latency_ms_p50']:.3f} ms, {sp['users_per_s']:,.0f} users/s in batches")
    return 0


def cmd_serve(args) -> int:
    """Check the exposure first (a public address needs a token or --insecure), then bind
    the port (in use: refused before anything is printed), load the models (and the update
    log, replayed), and only then say where the service listens - with the port the system
    gave for --port 0."""
    from .deploy.onnx_export import require_deploy_extra
    require_deploy_extra()
    from .deploy.auth import allowed_hosts, is_loopback, read_token_file
    from .deploy.service import bind, create_app, load_served, serve
    from .rundir import RunDir
    from .runtime import log, set_threads, setup_logging
    cfg = _resolve(args)
    quiet = cfg.quiet
    setup_logging(quiet)
    if not is_loopback(args.host) and not args.token_file and not args.insecure:
        raise PakdError(f"--host {args.host[:80]} serves other machines, and the service would "
                        "answer anyone: pass --token-file FILE (clients then send "
                        "'Authorization: Bearer <token>'), or --insecure to serve without "
                        "authentication on a network you trust; or bind 127.0.0.1")
    token = read_token_file(args.token_file) if args.token_file else None
    if args.insecure and token is None and not is_loopback(args.host):
        log.warning("--insecure: serving %s without authentication (updates and admin "
                    "requests still need the token in the state directory)", args.host)
    if args.state and (args.onnx or args.read_only):
        raise PakdError("--state keeps live updates, which the PyTorch student takes: drop "
                        f"{'--onnx' if args.onnx else '--read-only'} or --state")
    sock = bind(args.host, args.port)
    try:
        threads = set_threads(cfg.threads)     # 0: all cores, for torch and ONNX alike
        student, updater, writer = _serve_student(args, token, threads, quiet)
        teacher, given = None, _serve_teacher(args)
        if given:
            t = RunDir(given).ensemble if RunDir.is_run(given) else given
            teacher = load_served(t, k=args.k, threads=threads, label="teacher")
        sc = cfg.serve
        app = create_app(student, teacher, fallback=sc.fallback, max_batch=sc.max_batch,
                         token=token, allowed_hosts=allowed_hosts(args.host),
                         rate_limit=sc.rate_limit, docs=args.docs, updater=updater,
                         write_token=writer)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        name = updater.state.name if updater else student.dep.name
        backend = "pytorch, live updates" if updater else student.graphs.backend
        print(f"serving {name} ({backend}) on http://{shown}:{port}/ (Ctrl-C stops)",
              flush=True)
        serve(app, sock, log_level="warning" if quiet else "info")
    finally:
        sock.close()
    return 0


def _serve_teacher(args) -> str | None:
    """serve's teacher path: --teacher-model, or the deprecated --teacher (which names a
    model kind under fisher and distill), with a warning naming the new flag."""
    old = getattr(args, "teacher_deprecated", None)
    if old and not args.teacher_model:
        from .runtime import log
        log.warning("pakd serve --teacher is deprecated (under fisher and distill --teacher "
                    "names a model kind): use --teacher-model %s", old)
        return old
    return args.teacher_model


def _serve_student(args, token, threads: int, quiet: bool):
    """(served student, `Updater`, write token): a student with a state directory takes
    live updates (its log replayed; the token of --token-file, else STATE/token); without
    one (--onnx, --read-only, a model outside a run) it is served as saved."""
    from .deploy.service import load_served, open_updater, write_token
    from .runtime import log
    state = _state_dir(args)
    if state is None:
        return (load_served(args.model, onnx=args.onnx, int8=args.int8, k=args.k,
                            threads=threads, run_dir=args.run, quiet=quiet), None, token)
    updater, writer = open_updater(args.model, state, k=args.k, run_dir=args.run), token
    if writer is None:
        writer, where = write_token(state)
        log.warning("updates and admin requests need the bearer token in %s", where)
    if updater.log.records:
        log.warning("replayed %d update(s) from %s", len(updater.log.records), updater.log.path)
    return None, updater, writer


def _state_dir(args) -> Path | None:
    """Where the update log lives: --state, else RUN/service of the model's run; None (no
    live updates) with --onnx, --read-only, or a model outside any run without --state."""
    from .rundir import RunDir
    from .runtime import log
    if args.state:
        return Path(args.state)
    if args.onnx or args.read_only:
        return None
    p = Path(args.model)
    rd = RunDir(args.run) if args.run else (RunDir(p) if RunDir.is_run(p) else RunDir.of_model(p))
    if rd is None:
        log.warning("no live updates: %s is outside a run directory; give --state DIR to keep "
                    "its update log there", args.model)
        return None
    if "teachers" in p.parts or p.name == "ensemble":
        return None                  # a teacher: no fold-in; served read-only
    return rd.root / "service"


def cmd_update(args) -> int:
    from .deploy.update_cmd import update
    from .runtime import setup_logging
    setup_logging(_quiet(args))
    out = update(args.model, args.out, ratings=args.ratings, items=args.items, log=args.log,
                 run_dir=args.run)
    print(f"folded {out['source']} into {out['kind']}: {out['users']:,} users "
          f"(+{out['new_users']:,}), {out['items']:,} items (+{out['new_items']:,}), "
          f"{out['ratings']:,} ratings added; saved {out['model']}")
    return 0


# ----------------------------------------------------------------------------- parser

def _command(sub, name: str, help: str, *, usage: str | None = None, epilog: str | None = None):
    """A sub-command's parser: its one-line description, the same layout everywhere."""
    return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                          allow_abbrev=False, formatter_class=_formatter, usage=usage,
                          epilog=epilog)


def _stage_parser(sub, name: str, help: str, func, command: str | None = None,
                  existing: bool = False, fresh: bool = True):
    p = _command(sub, name, help, epilog=_epilog(command or name),
                 usage=f"pakd {command or name} --run dir [--config yaml] [settings]")
    _run_dir_arg(p, existing=existing)
    _config_arg(p)
    if fresh:
        p.add_argument("--fresh", action="store_true",
                       help="start a new run in the folder even if it holds one made with "
                       "other data, split or seed (the old one is moved to "
                       "<dir>.replaced-<time>)")
    add_settings(p, command or name)
    p.set_defaults(func=func)
    return p


def _nproc_arg(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--nproc", type=_bounded_int(1, 1024, "--nproc"), metavar="n",
                   help="train as n data-parallel processes (torchrun, gloo); the same result "
                   "as one process up to float rounding")
    return p


def _seeds_arg(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--seeds", metavar="a,b,...", type=_seed_list,
                   help="one run per seed in <dir>/seed-<s>, pooled into <dir>/seeds.md")
    return p


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes integers separated by commas, e.g. "
                                         f"0,1,2; got {text[:60]!r}") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0 or max(seeds) >= 2**32:
        raise argparse.ArgumentTypeError(f"--seeds needs distinct integers in 0 .. 2^32-1, "
                                         f"e.g. 0,1,2; got {text[:60]!r}")
    return seeds


def _track_spec(text: str) -> str:
    """--track's value: the MLflow URI, "" for the default store."""
    from .report.track import parse
    try:
        return parse(text) or ""
    except PakdError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _bounded_int(lo: int, hi: int | None, what: str):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} takes an integer, got {text[:40]!r}") \
                from None
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(
                f"{what} must be {lo} .. {hi}, got {text[:40]}" if hi is not None else
                f"{what} must be at least {lo}, got {text[:40]}")
        return v
    return parse


def _positive_float(what: str):
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} takes a number, got {text[:40]!r}") \
                from None
        if not v >= 0 or v == float("inf"):
            raise argparse.ArgumentTypeError(f"{what} must be a finite number >= 0, got "
                                             f"{text[:40]}")
        return v
    return parse


def _epilog(command: str) -> str | None:
    shared = SECTIONS[command][1]
    if not shared or _SHOW_ALL:
        return None
    return (f"Also accepts the settings of the {', '.join(shared)} sections (--help-all lists "
            "them). Settings come from, later ones winning: the profile, <dir>/run.yaml, "
            "--config, these flags.")


def _help_of(p: argparse.ArgumentParser):
    """A command that only groups others (``pakd data``): print its help."""
    def show(args) -> int:
        p.print_help()
        return 0
    return show


MODEL_HELP = ("saved model: <run>/models/saved/best_student_model (or its .safetensors), a "
              "member <run>/teachers/svd, the ensemble <run>/teachers/ensemble, or a run "
              "directory (its best student)")


def build_parser() -> argparse.ArgumentParser:
    from .config.defaults import DEFAULT_MEMBERS
    from .data.movielens import BASE_URL, RELEASES
    p = argparse.ArgumentParser(
        prog="pakd", allow_abbrev=False, formatter_class=_formatter,
        description="Compress recommender ensembles into small, fast students: teachers, "
        "Fisher analysis, pruning-aware distillation, honest reports.",
        epilog="Each command's --help lists its settings; docs/ has the details "
        "(docs/hardening.md: the service's security options and the input limits).")
    p.add_argument("--version", action="version", version=f"pakd {__version__}")
    p.set_defaults(func=_help_of(p))
    sub = p.add_subparsers(dest="command", metavar="command")

    data = _command(sub, "data", "inspect, download and split datasets",
                    usage="pakd data action ...")
    data.set_defaults(func=_help_of(data))
    dsub = data.add_subparsers(dest="data_command", metavar="action")
    info = _command(dsub, "info", "counts, rating histogram and fields of a dataset",
                    usage="pakd data info [--json] [--config yaml] [settings]")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    _config_arg(info)
    add_settings(info, "data info")
    info.set_defaults(func=cmd_data_info)
    _stage_parser(dsub, "split", "write a seeded train/valid/test split to <dir>/split.csv",
                  cmd_data_split, "data split")
    dl = _command(dsub, "download", "download a MovieLens release over https, checked "
                  "against pakd's own MD5 table", usage="pakd data download release [options]")
    dl.add_argument("name", metavar="release", help=f"one of {', '.join(RELEASES)}")
    dl.add_argument("--cache-dir", metavar="dir",
                    help="target folder (default: $PAKD_CACHE or ~/.cache/pakd)")
    dl.add_argument("--base-url", default=BASE_URL, metavar="url",
                    help=f"mirror to download from (default: {BASE_URL})")
    dl.add_argument("--allow-insecure", action="store_true",
                    help="accept a plain http:// mirror (default: https only)")
    dl.add_argument("--allow-unverified", action="store_true",
                    help="download a release pakd has no checksum of record for (ml-latest, "
                    "ml-latest-small) unchecked (default: refused)")
    add_settings(dl, "data download")
    dl.set_defaults(func=cmd_data_download)

    conf = _command(sub, "config", "show the resolved settings", usage="pakd config action ...")
    conf.set_defaults(func=_help_of(conf))
    csub = conf.add_subparsers(dest="config_command", metavar="action")
    show = _command(csub, "show", "print the resolved settings as YAML",
                    usage="pakd config show [--run dir] [--config yaml] [settings]")
    _run_dir_arg(show, required=False)
    _config_arg(show)
    add_settings(show, "config show")
    show.set_defaults(func=cmd_config_show)

    _nproc_arg(_stage_parser(sub, "train", f"train the teachers (by default "
                             f"{', '.join(DEFAULT_MEMBERS)}; --models picks) into "
                             "<dir>/teachers/", cmd_train))
    _stage_parser(sub, "ensemble", "combine trained teachers into the ensemble teacher; writes "
                  "<dir>/teachers.json and teachers.md", cmd_ensemble, existing=True)
    _nproc_arg(_stage_parser(sub, "fisher", "Fisher information of the teachers per layer, "
                             "structure and task, checked against measured damage", cmd_fisher,
                             existing=True))
    _seeds_arg(_nproc_arg(_stage_parser(sub, "distill", "prune while distilling the teacher "
                                        "into a student, with baselines, at each size "
                                        "budget", cmd_distill, existing=True)))
    tn = _stage_parser(sub, "tune", "search student settings for the best valid NDCG@10 and "
                       "RMSE under a size or latency cap (Optuna, multi-objective, resumable)",
                       cmd_tune, existing=True, fresh=False)
    tn.add_argument("--storage", metavar="url", help="Optuna storage URL the study lives in, "
                    "shared by workers and machines, e.g. postgresql://user@host/db; not "
                    "written to run.yaml (default: sqlite in <dir>/tune.db)")
    tn.add_argument("--final", action="store_true", help="run no trials: train the chosen "
                    "trial's student once and the run's own settings at the same budget, report "
                    "both on the test part, save the tuned student to <dir>/models/tuned/")
    rep = _stage_parser(sub, "report", "re-render the run's reports, plots and HTML page; "
                        "print the run summary", cmd_report, existing=True, fresh=False)
    rep.add_argument("--html", action="store_true", help="print the path of the run's "
                     "self-contained HTML page (<dir>/report.html) instead of the summary; on "
                     "an unfinished run it shows the finished stages and names the missing ones")
    rep.add_argument("--open", action="store_true", help="also open the page in the browser "
                     "(implies --html)")
    run = _seeds_arg(_nproc_arg(_stage_parser(sub, "run", "the whole pipeline: split, "
                                              "teachers, ensemble, Fisher, PAKD sweep, report",
                                              cmd_run)))
    run.add_argument("--track", metavar="mlflow[=uri]", type=_track_spec,
                     help="log the run to MLflow: one run, a nested run per stage (settings, "
                     "metrics, reports, the best student); the default store is the file store "
                     "mlruns/ beside the run; needs pip install 'pakd[track]' (default: off)")

    rec = _command(sub, "recommend", "a user's top-K titles from a saved model",
                   usage="pakd recommend --model path --user id [options]")
    rec.add_argument("--model", required=True, metavar="path", help=MODEL_HELP)
    rec.add_argument("--user", required=True, metavar="id", help="the user's original ID")
    rec.add_argument("-k", type=_bounded_int(1, None, "-k"), default=10, metavar="n",
                     help="how many items, at most the catalogue's size (default: 10)")
    rec.add_argument("--format", choices=["text", "json", "csv"], default="text",
                     metavar="text|json|csv",
                     help="text for people; json (one object) or csv (rank,item,title,score) "
                     "for scripts (default: text)")
    rec.add_argument("--run", metavar="dir", help="run directory whose split marks the items "
                     "the user has seen (default: found from the model path)")
    rec.add_argument("--include-seen", action="store_true",
                     help="do not skip seen items (default: skipped)")
    add_settings(rec, "recommend")
    rec.set_defaults(func=cmd_recommend)

    ex = _command(sub, "export", "export a model to ONNX (top-K and rating graphs), check "
                  "parity with PyTorch, optionally int8",
                  usage="pakd export --model path [--out dir] [options]")
    ex.add_argument("--model", required=True, metavar="path", help=MODEL_HELP)
    ex.add_argument("--format", choices=["onnx"], default="onnx", metavar="onnx",
                    help="export format (default: onnx)")
    ex.add_argument("--out", metavar="dir", help="output directory (default: beside the "
                    "model, <stem>_onnx)")
    ex.add_argument("--int8", action="store_true", help="also write int8 graphs "
                    "(onnxruntime dynamic quantisation) and measure their accuracy and speed")
    ex.add_argument("-k", type=_bounded_int(1, None, "-k"), default=100, metavar="n",
                    help="top-K length inside the graph; requests may ask for fewer "
                    "(default: 100, or the catalogue's size if smaller)")
    ex.add_argument("--run", metavar="dir", help="run directory (default: found from the "
                    "model path)")
    # the old spelling of --export-seconds (bench.seconds is the sweep's measurement)
    ex.add_argument("--bench-seconds", dest="bench_seconds_deprecated", metavar="x",
                    type=_positive_float("--bench-seconds"), help=argparse.SUPPRESS)
    _config_arg(ex)
    add_settings(ex, "export")
    ex.set_defaults(func=cmd_export)

    sv = _command(sub, "serve", "serve recommendations over HTTP (FastAPI/uvicorn)",
                  usage="pakd serve --model path [options]",
                  epilog="A --host other than loopback needs --token-file (or --insecure). "
                  "docs/hardening.md describes every security option.")
    sv.add_argument("--model", required=True, metavar="path", help=MODEL_HELP)
    sv.add_argument("--onnx", nargs="?", const="auto", metavar="dir",
                    help="answer from ONNX graphs: a `pakd export` directory, or without dir "
                    "the default one (exported now if missing) (default: PyTorch)")
    sv.add_argument("--int8", action="store_true", help="with --onnx: the int8 graphs")
    sv.add_argument("--teacher-model", metavar="path", help="also load a teacher (a run "
                    "directory: its ensemble; or a model path) for model=teacher and the page "
                    "(default: none)")
    # under fisher and distill --teacher names a model kind; here it was a path: kept as a
    # deprecated spelling of --teacher-model (cmd_serve says so)
    sv.add_argument("--teacher", dest="teacher_deprecated", metavar="path",
                    help=argparse.SUPPRESS)
    sv.add_argument("--host", default="127.0.0.1", metavar="addr",
                    help="interface to listen on; any but loopback needs --token-file or "
                    "--insecure (default: 127.0.0.1)")
    sv.add_argument("--port", type=_bounded_int(0, 65535, "--port"), default=8000,
                    metavar="n", help="TCP port, 0 for a free one (default: 8000)")
    sv.add_argument("--token-file", metavar="file", help="file holding a bearer token: every "
                    "endpoint but /healthz and the page then needs 'Authorization: Bearer "
                    "<token>' (default: no token)")
    sv.add_argument("--insecure", action="store_true", help="allow a non-loopback --host "
                    "without --token-file (default: refused)")
    sv.add_argument("--docs", action="store_true", help="serve /docs (plain HTML, no CDN) and "
                    "/openapi.json (default: off)")
    sv.add_argument("-k", type=_bounded_int(1, None, "-k"), default=100, metavar="n",
                    help="largest k a request may ask for (default: 100, or the catalogue's "
                    "size if smaller)")
    sv.add_argument("--run", metavar="dir", help="run directory (default: found from the "
                    "model path)")
    _config_arg(sv)
    sv.add_argument("--state", metavar="dir", help="directory of the update log (live "
                    "updates, replayed on restart) and, without --token-file, of the token "
                    "updates need (default: <run>/service for a student inside a run)")
    sv.add_argument("--read-only", action="store_true", help="take no live updates "
                    "(default: a student takes them)")
    add_settings(sv, "serve")
    sv.set_defaults(func=cmd_serve)

    up = _command(sub, "update", "fold new ratings, users and items into a saved student "
                  "without training", usage="pakd update --model path (--ratings csv "
                  "[--items csv] | --log dir) --out path",
                  epilog="docs/live.md describes the files and the rules.")
    up.add_argument("--model", required=True, metavar="path", help="saved student (or a run "
                    "directory: its best student)")
    up.add_argument("--ratings", metavar="csv", help="new ratings: columns user,item,rating"
                    "[,timestamp]; a pair rated twice keeps the later (by timestamp, else by "
                    "row)")
    up.add_argument("--items", metavar="csv", help="new items: columns item[,title] and the "
                    "model's item fields (e.g. genres 'A|B', year)")
    up.add_argument("--log", metavar="dir", help="a service's --state directory: fold its "
                    "update log in")
    up.add_argument("--out", required=True, metavar="path", help="the stem of the student to "
                    "write (<path>.safetensors, .json, .catalog.json)")
    up.add_argument("--run", metavar="dir", help="run directory of the model (default: found "
                    "from the model path or its catalogue)")
    add_settings(up, "update")
    up.set_defaults(func=cmd_update)
    return p


def main(argv: list[str] | None = None) -> int:
    global _SHOW_ALL
    argv = list(sys.argv[1:] if argv is None else argv)
    _SHOW_ALL = "--help-all" in argv
    if _SHOW_ALL:
        argv = [a if a != "--help-all" else "--help" for a in argv]
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv                   # as given: --nproc relaunches the same command
    from . import distributed
    ok = False
    try:
        if distributed.launched():
            if args.command not in _DISTRIBUTED:
                raise PakdError(f"pakd {args.command} runs in one process; under torchrun pakd "
                                f"runs {', '.join(_DISTRIBUTED)} (the teachers, the Fisher "
                                "estimate and the students are shared out over the "
                                "processes)")
            distributed.init()
        code = int(args.func(args) or 0)
        ok = code == 0
        return code
    except PakdError as e:
        from .runtime import log
        log.debug("error", exc_info=True)
        print(f"pakd: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pakd: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:   # `pakd ... | head`: the reader left; nothing to report
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:      # a write anywhere (log, plots, a library's file) that cannot be
        from .errors import write_error        # done: say where and why, not a traceback
        err = write_error(e)
        if err is None:
            raise
        print(f"pakd: error: {err}", file=sys.stderr)
        return 2
    finally:
        _release_lock()
        if not ok:
            _remove_half_made()
        distributed.close(ok)


if __name__ == "__main__":
    sys.exit(main())
