"""The command line: one flag per setting in every command, brief help, old spellings."""
import warnings

import pytest

from pakd.cli import SECTIONS, _overrides, build_parser, main
from pakd.config import ORIGINAL, settings, spellings


def help_of(capsys, *argv) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return capsys.readouterr().out


def test_run_and_distill_show_the_same_budgets_flag(capsys):
    for cmd in ("run", "distill"):
        text = help_of(capsys, cmd)
        assert "--budgets" in text and "3%" in text, cmd
        assert "--ratios" not in text.replace("--pruning-ratios", "").replace(
            "--split-ratios", ""), cmd
    assert "--split-ratios" in help_of(capsys, "run")


def test_ratios_alone_means_nothing(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--out", "x", "--ratios", "0.5"])


def test_help_shows_own_settings_first_and_hides_data_options(capsys):
    text = help_of(capsys, "distill")
    groups = [line for line in text.splitlines() if line.endswith("settings:")]
    assert groups[0] == "distill settings:" and "general settings:" in groups
    assert "--dataset" not in text and "--help-all" in text
    assert len(text.splitlines()) < 170       # own settings only: not the data options
    assert text.count("(default:") == len([g for g in text.splitlines() if "(default:" in g])
    full = help_of(capsys, "distill", "--help-all")
    assert "--dataset" in full and len(full.splitlines()) > len(text.splitlines())


def test_hidden_sections_are_still_accepted():
    args = build_parser().parse_args(["distill", "--run", "x", "--dataset", "ml-1m",
                                      "--eval-chunk", "64"])
    assert _overrides(args) == {"data.dataset": "ml-1m", "eval.chunk": 64} or \
        _overrides(args) == {"data.dataset": "ml-1m", "eval.chunk": "64"}


@pytest.mark.parametrize("command", ["fisher", "distill", "run"])
def test_original_spellings_work_on_every_command_that_has_the_setting(command):
    taken = {s.path for s in settings()
             if s.section in SECTIONS[command][0] + SECTIONS[command][1] + [""]}
    for key, paths in ORIGINAL.items():
        here = [p for p in paths if p in taken]
        if not here:
            continue
        for flag in spellings("--" + key.replace("_", "-")):
            value = {"fisher.teacher": "svd", "distill.teacher": "svd",
                     "fisher.target_layers": "cin", "fisher.focus_tasks": "rating",
                     "distill.budgets": "0.3", "distill.distill_tasks": "rating",
                     "distill.student": "svd", "ensemble.algorithms": "svd",
                     "ensemble.weights": "1", "ensemble.tasks": "rating"}[here[0]]
            args = build_parser().parse_args(command.split() + ["--run", "x", flag, value])
            got = _overrides(args)
            assert set(here) <= set(got), (command, flag)


def test_a_setting_own_flag_beats_an_alias():
    args = build_parser().parse_args(["run", "--out", "x", "--teacher-type", "svd",
                                      "--distill-teacher", "autoint"])
    got = _overrides(args)
    assert got["fisher.teacher"] == "svd" and got["distill.teacher"] == "autoint"


def test_quiet_silences_library_warnings(capsys):
    from pakd.runtime import setup_logging
    with warnings.catch_warnings():
        setup_logging(True)
        warnings.warn("a library complains")
        assert capsys.readouterr().err == ""
    setup_logging(False)


@pytest.mark.parametrize("argv,words", [
    (["--algorithms", "svd,svd,autoint"], "repeats"),
    (["--algorithms", "svd,slopeone"], "slopeone"),
    (["--rerank-n", "0"], "positive"),
    (["--temperature", "0"], "temperature"),
    (["--ease-lambdas", "-1"], "positive"),
    (["--pruning-ratios", "1.5"], "pruning ratio in (0, 1)"),   # were run as "ratio 1.5000"
    (["--budgets", "nan"], "pruning ratio in (0, 1)"),
    (["--budgets", "0.5,0.5"], "repeats"),
    (["--budgets", "0%"], "between 0% and 100%"),
    (["--budgets", "3%,3%"], "repeats"),
    (["--budgets", ""], "at least one budget"),
    (["--ablation", "7%"], "not one of --budgets"),
    (["--weights", "nan,0.4,0.2,0.1"], "finite"),   # issue 15: NaN reached ensemble.json
    (["--weights", "0,0,0,0"], "positive"),
])
def test_bad_issue_10_settings_stop_before_anything_runs(tmp_path, capsys, argv, words):
    try:
        rc = main(["run", "--out", str(tmp_path / "r"), "--profile", "quick", "-q", *argv])
    except SystemExit as e:          # argparse: a name outside the choices
        rc = e.code
    err = capsys.readouterr().err
    assert rc != 0 and words in err
    assert not (tmp_path / "r" / "split.csv").exists()


def test_more_candidates_than_items_stop_before_training(tmp_path, capsys):
    rc = main(["run", "--out", str(tmp_path / "r"), "--profile", "quick", "-q",
               "--rerank-n", "5,100000"])
    err = capsys.readouterr().err
    assert rc != 0 and "100000" in err and "catalogue" in err
    assert not (tmp_path / "r" / "teachers").exists() or not any((tmp_path / "r" / "teachers").iterdir())


def test_python_dash_m_runs_the_cli():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "pakd", "--version"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.startswith("pakd ")


# ----------------------------------------------------------------------------- issue 34

COMMANDS = ["data info", "data split", "data download", "config show", "train", "ensemble",
            "fisher", "distill", "report", "run", "recommend", "export", "serve"]


def test_plain_pakd_prints_the_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: pakd") and "recommend" in out and "serve" in out
    assert main(["data"]) == 0 and "download" in capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS)
def test_one_help_style_everywhere(capsys, command):
    import re
    text = help_of(capsys, *command.split())
    lines = text.splitlines()
    assert lines[0].startswith(f"usage: pakd {command}")
    about = " ".join(lines[2:lines.index("", 2)])                # the one-line description
    assert about[0].isupper() and about.endswith(".") and about.count(". ") == 0
    assert "-q [bool], --quiet [bool]" in text
    assert not re.search(r"(-\w|--[\w-]+) \[?[A-Z][A-Z_]+\b", text), \
        re.search(r"(-\w|--[\w-]+) \[?[A-Z][A-Z_]+\b", text)               # lower-case metavars
    entries, cur = [], None             # each option with its wrapped help text
    for line in lines:
        if re.match(r"  -", line):
            cur = [line]
            entries.append(cur)
        elif cur is not None and line.startswith("    "):
            cur.append(line)
        else:
            cur = None
    for entry in entries:               # every option taking a value shows its default
        m = re.match(r"\s+(--[\w-]+) [a-z]", entry[0])
        block = " ".join(entry)
        if m and m.group(1) not in ("--run", "--config", "--model", "--user", "--seeds",
                                    "--nproc") and " sets " not in block:
            assert "default" in block or "unset" in block, (command, block)


@pytest.mark.parametrize("command", ["report", "data info"])
def test_commands_offer_only_the_settings_they_use(capsys, command):
    text = help_of(capsys, *command.split())
    for flag in ("--fresh", "--resume", "--profile", "--seed ", "--threads"):
        assert flag not in text, (command, flag)
    args = ["report", "--run", "x", "--seed", "3"] if command == "report" else \
        ["data", "info", "--resume"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(args)


def test_train_help_names_the_default_members(capsys):
    from pakd.config import DEFAULT_MEMBERS
    text = help_of(capsys, "train")
    assert all(m in text.split("\n\n")[1] for m in DEFAULT_MEMBERS)


def test_serve_and_export_read_their_sections_and_the_one_threads_setting(tmp_path):
    """serve and export take settings like every command: flags, --config YAML, and the
    general threads setting (one default, 0 = all cores) instead of their own --threads."""
    from pakd.cli import _resolve, build_parser
    from pakd.config import RunConfig
    yaml_file = tmp_path / "s.yaml"
    yaml_file.write_text("serve:\n  max_batch: 7\nthreads: 3\n")
    args = build_parser().parse_args(["serve", "--model", "m", "--config", str(yaml_file),
                                      "--rate-limit", "2.5", "--fallback", "popular"])
    cfg = _resolve(args)
    assert (cfg.serve.max_batch, cfg.serve.rate_limit, cfg.serve.fallback) == (7, 2.5, "popular")
    assert cfg.threads == 3
    plain = _resolve(build_parser().parse_args(["serve", "--model", "m"]))
    assert plain.threads == RunConfig().threads == 0 and plain.serve.fallback is None
    ex = _resolve(build_parser().parse_args(["export", "--model", "m", "--export-seconds",
                                             "0.25", "--threads", "2"]))
    assert (ex.export.seconds, ex.threads) == (0.25, 2)
    from pakd.errors import PakdError
    with pytest.raises(PakdError, match="--max-batch"):
        _resolve(build_parser().parse_args(["serve", "--model", "m", "--max-batch", "0"]))


def test_serve_teacher_is_now_teacher_model_and_the_old_flag_warns(caplog):
    """--teacher names a model kind under fisher and distill; serve's path is
    --teacher-model, and its old --teacher still works with a warning naming the new flag."""
    import logging

    from pakd.cli import _serve_teacher, build_parser
    p = build_parser()
    assert _serve_teacher(p.parse_args(["serve", "--model", "m", "--teacher-model", "r"])) == "r"
    with caplog.at_level(logging.WARNING, logger="pakd"):
        assert _serve_teacher(p.parse_args(["serve", "--model", "m", "--teacher", "old"])) == "old"
    assert "--teacher-model old" in caplog.text


def test_the_download_base_url_is_one_constant():
    from pakd.config import RunConfig
    from pakd.data import movielens, releases
    assert RunConfig().data.base_url == releases.BASE_URL == movielens.BASE_URL
