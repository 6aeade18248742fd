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
from ..results import (FisherAnalysis, FisherExperiment, PakdExperiment, RunTimings,
                       TeachersReport, load_result)
from ..rundir import RunDir


READS_TIMINGS = True  # the run's timings are written before it (`pakd.recipes.Stage`)


def run(cfg: RunConfig, rd: RunDir, enc=None) -> str:
    """Re-render what the stages wrote; returns the run summary (Markdown)."""
    teachers = _load(rd.teachers_json, TeachersReport)
    fisher = _load(rd.fisher_json, FisherAnalysis)
    pakd = _load(rd.pakd_json, PakdExperiment)
    if teachers:
        rd.write_text(rd.teachers_md, teachers_markdown(teachers))
    if fisher:
        exp = _load(rd.fisher_experiment_json, FisherExperiment)
        rd.write_text(rd.fisher_md, fisher_markdown(fisher, experiment=exp))
        fisher_plots(fisher, rd)
    if pakd:
        pakd.references = references(rd)        # peers may have run since the sweep
        rd.write_text(rd.pakd_md, pakd_markdown(pakd))
        pakd_plots(pakd, rd)
    write_html(rd.root)
    timings = _load(rd.timings_json, RunTimings)
    text = summary_markdown(rd, teachers, fisher, pakd, timings)
    rd.write_text(rd.summary_md, text)
    return text


def _load(path, kind):
    """The result a stage wrote, None when that stage has not run."""
    return load_result(path, kind) if path.is_file() else None
