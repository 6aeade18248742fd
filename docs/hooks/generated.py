"""MkDocs hook: the pages' generated parts, filled in while the site builds.

- ``<!-- gen: KIND FOLDER -->``: a results block from a kept run (docs/gen_results.py);
- ``<!-- cli-reference -->``: every `pakd` command's --help, from pakd's own argument parser
  (with --help-all's shared settings), so the reference can never drift from the CLI.
"""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("gen_results", HERE.parent / "gen_results.py")
gen_results = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen_results)


def _commands(parser: argparse.ArgumentParser, prefix: str = "pakd"):
    """(command line, its parser) for every leaf command, in the parser's order."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
        return
    for name, sub in subs[0].choices.items():
        yield from _commands(sub, f"{prefix} {name}")


def cli_reference() -> str:
    from pakd import cli
    old = cli._SHOW_ALL
    cli._SHOW_ALL = True             # the shared sections too, as --help-all shows them
    try:
        parser = cli.build_parser()
        out = [f"```text\n{parser.format_help().rstrip()}\n```", ""]
        for line, p in _commands(parser):
            anchor = line.replace(" ", "-")
            out += [f"## {line} {{#{anchor}}}", "", f"```text\n{p.format_help().rstrip()}\n```",
                    ""]
    finally:
        cli._SHOW_ALL = old
    return "\n".join(out)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if "<!-- cli-reference -->" in markdown:
        markdown = markdown.replace("<!-- cli-reference -->", cli_reference())
    return gen_results.fill_markers(markdown)
