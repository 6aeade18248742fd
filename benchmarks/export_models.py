"""Export the run's best student, every member and the ensemble to ONNX (fp32 and int8) and
tabulate parity, test accuracy and speed from each export's metadata.json (copied without
its IDs-and-titles index to summary.json, the file kept in the repository).

    .venv/bin/python benchmarks/export_models.py --run runs/default \
        --out benchmarks/results/2026-11-25_issue12_export
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default="runs/default")
    p.add_argument("--out", required=True)
    p.add_argument("--models", default="best_student_model,svd,ease,xdeepfm,autoint,ensemble")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    run, out = Path(args.run), Path(args.out)
    rows = []
    for name in args.models.split(","):
        model = run / "models" / "saved" / name if name == "best_student_model" else run / "teachers" / name
        dest = out / name
        if not (dest / "metadata.json").is_file():
            r = subprocess.run([sys.executable, "-m", "pakd.cli", "export", "--model", str(model),
                                "--out", str(dest), "--int8", "--threads", str(args.threads),
                                "-q"], capture_output=True, text=True)
            print(r.stdout, r.stderr[-3000:], flush=True)
        meta = json.loads((dest / "metadata.json").read_text())
        # kept in the repository: everything but the IDs-and-titles index
        (dest / "summary.json").write_text(json.dumps(
            {k: v for k, v in meta.items() if k != "index"}, indent=2) + "\n")
        rows.append((name, meta))
    lines = ["| model | params | ONNX MB fp32 / int8 | max abs score diff | top-100 lists identical "
             "(ties only) | NDCG@10 PyTorch / fp32 / int8 | RMSE PyTorch / fp32 / int8 | "
             "one-user p50 ms PyTorch / fp32 / int8 |",
             "|---|---:|---|---:|---|---|---|---|"]
    for name, m in rows:
        par, ms = m["parity"], m["measured"]
        size = m["sizes_bytes"]
        fp32 = (size["topk"] + size["rating"]) / 1e6
        i8 = (size.get("topk_int8", 0) + size.get("rating_int8", 0)) / 1e6
        ext = sum(f.stat().st_size for f in (out / name).glob("*.data")) / 1e6
        mb = f"{fp32:.1f} / {i8:.1f}" + (f" (+{ext:.0f} external)" if ext else "")

        def three(key, fmt):
            return " / ".join(fmt.format(ms[v]["metrics"][key]) if ms.get(v) and ms[v]["metrics"]
                              else "–" for v in ("pytorch", "onnx_fp32", "onnx_int8"))

        lat = " / ".join(f"{ms[v]['speed']['latency_ms_p50']:.2f}" if v in ms else "–"
                         for v in ("pytorch", "onnx_fp32", "onnx_int8"))
        lines.append(f"| {name} | {m['model']['params']:,} | {mb} | "
                     f"{max(par['max_abs_score_diff'], par['max_abs_rating_diff']):.1e} | "
                     f"{par['topk_identical']}/{par['users']} ({par['topk_differ_in_ties_only']}) | "
                     f"{three('ndcg@10', '{:.4f}')} | {three('rmse', '{:.4f}')} | {lat} |")
    (out / "export_models.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
