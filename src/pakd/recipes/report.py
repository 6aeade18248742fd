"""Recipe `report`: every Markdown summary and plot, re-rendered from the run's JSON, the
run on one self-contained page (RUN/report.html) and in one table (RUN/summary.md, also
printed at the end of `pakd run`)."""
from __future__ import annotations

from ..config import RunConfig
from ..report.fisher import fisher_markdown, fisher_plots
from ..report.html import write_html
from ..report.pakd import pakd_markdown, pakd_plots, references
from ..report.summary import summary_markdown
from ..report.teachers import teachers_markdown
from ..rundir import RunDir, read_json


READS_TIMINGS = True  # the run's timings are written before it (`pakd.recipes.Stage`)


def run(cfg: RunConfig, rd: RunDir, enc=None) -> str:
    """Re-render what the stages wrote; returns the run summary (Markdown)."""
    teachers = read_json(rd.teachers_json) if rd.teachers_json.is_file() else None
    fisher = read_json(rd.fisher_json) if rd.fisher_json.is_file() else None
    pakd = read_json(rd.pakd_json) if rd.pakd_json.is_file() else None
    if teachers:
        rd.write_text(rd.teachers_md, teachers_markdown(teachers))
    if fisher:
        exp = read_json(rd.fisher_experiment_json) if rd.fisher_experiment_json.is_file() else None
        rd.write_text(rd.fisher_md, fisher_markdown(fisher, experiment=exp))
        fisher_plots(fisher, rd)
    if pakd:
        pakd["references"] = references(rd)        # peers may have run since the sweep
        rd.write_text(rd.pakd_md, pakd_markdown(pakd))
        pakd_plots(pakd, rd)
    write_html(rd.root)
    timings = read_json(rd.timings_json) if rd.timings_json.is_file() else {}
    text = summary_markdown(rd, teachers, fisher, pakd, timings)
    rd.write_text(rd.summary_md, text)
    return text
