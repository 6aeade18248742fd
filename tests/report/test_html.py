"""RUN/report.html: one self-contained page per run, every section, nothing fetched."""
import re
import shutil

from pakd.cli import main
from pakd.report.html import SECTIONS, render

# an asset the browser would fetch: src/href/url()/@import pointing off the file
REMOTE = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//|url\(\s*["']?(?:https?:)?//|@import""",
                    re.I)


def test_the_run_writes_its_page_with_every_section(pipeline_run):
    page = (pipeline_run / "report.html").read_text()      # written by `pakd run`
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for sid, title in SECTIONS:
        assert f'<section id="{sid}"><h2>{title}</h2>' in page
    assert not REMOTE.search(page) and "<script" not in page
    assert len(page.encode()) <= 5 * 2**20
    assert page.count("<svg") >= 5                       # teachers, students, speed, Fisher, damage
    assert "Not finished" not in page and "Best student" in page
    # every figure's ids are its own: two inline SVGs sharing a clip path id would draw wrong
    ids = re.findall(r'<clipPath id="([^"]+)"', page)
    assert ids and len(ids) == len(set(ids))


def test_an_unfinished_run_shows_what_finished_and_names_the_rest(pipeline_run, tmp_path, capsys):
    run = tmp_path / "half"
    shutil.copytree(pipeline_run, run, ignore=shutil.ignore_patterns(
        "analysis_results", "models", "per_user", "plots", "report.html", "summary.md",
        "timings.json"))
    assert main(["report", "--run", str(run), "--html", "-q"]) == 0
    assert capsys.readouterr().out.strip() == str(run / "report.html")
    page = (run / "report.html").read_text()
    assert "missing stages fisher, distill" in page
    assert page.count('class="missing"') >= 4          # students, speed, Fisher, damage, ...
    assert "ensemble (teacher)" in page                 # the finished teachers are shown
    assert all(f'id="{sid}"' in page for sid, _ in SECTIONS)


def test_report_html_refuses_a_folder_that_is_not_there(tmp_path, capsys):
    assert main(["report", "--run", str(tmp_path / "nowhere"), "--html"]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()


def test_a_seeds_directory_gets_the_pooled_page(tmp_path):
    import json
    root = tmp_path / "seeds"
    root.mkdir()
    row = {"method": "fisher_kd", "budget": "0.5", "model": "m", "params": 10.0,
           "per_seed": {"0": {"params": 10, "ndcg@10": 0.2}, "1": {"params": 11, "ndcg@10": 0.3}},
           "mean": {"rmse": 0.9, "ndcg@10": 0.25}, "sd": {"rmse": 0.01, "ndcg@10": 0.07},
           "of_teacher": {"rmse": 1.01, "ndcg@10": 0.93}, "fisher_kd_is": {}}
    (root / "seeds.json").write_text(json.dumps({"seeds": [0, 1], "rows": [row], "family": "x"}))
    page = render(root)
    assert "2 seeds (0, 1)" in page and "0.2500 ± 0.0700" in page and "93.0" in page
    assert 'href="seed-0/report.html"' in page


def test_the_environment_reads_at_a_glance_and_keeps_the_whole_record(tmp_path):
    """Plain values one per row (left-aligned, so a long one cannot push them out of view),
    the CPU and lock in a few words, every package folded below with the full record."""
    from pakd.results import RunTimings, write_result
    from pakd.rundir import RunDir
    rd = RunDir(tmp_path / "r")
    rd.root.mkdir()
    env = {"pakd": "0.1.0", "torch": "2.13.0+cpu", "torch_threads": 1, "git_dirty": False,
           "cpu": {"model": "AMD EPYC", "flags": ["avx2", "avx512f"], "cores": 2},
           "torch_build": {"cpu_capability": "AVX512", "blas_info": "mkl"},
           "lock": {"file": "requirements.lock", "sha256": "01bc793b2a10ffff", "differs": {}},
           "packages": {f"pkg{i}": f"{i}.0" for i in range(120)}}
    write_result(rd.timings_json, RunTimings.model_validate(
        {"split": 0.2, "teachers": 37.8, "total": 38.0, "environment": env}))
    page = render(rd.root)
    env_html = page[page.index('<section id="environment">'):page.index('<section id="teachers">')]
    kv = env_html[:env_html.index("</table>")]
    assert 'class="kv"' in kv and "table.kv td" in page
    for cell in ("<td>2.13.0+cpu</td>", "<td>AMD EPYC, 2 cores, AVX512 kernels, BLAS mkl</td>",
                 "<td>requirements.lock 01bc793b2a10 (installed exactly)</td>",
                 "<td>120 installed (below)</td>"):
        assert cell in kv
    assert "pkg119" not in kv and "avx512f" not in kv          # folded, not in the table
    folded = env_html[env_html.index("<details>"):env_html.index("</details>")]
    assert "pkg119" in folded and "avx512f" in folded
    assert "<td>37.8</td>" in env_html                           # the stage seconds too
