"""How far the catalogue KD's head approximation is from the exact loss (issues 10 and 13).

When the teacher's users x items matrix is over the memory budget, distillation keeps each
user's M likeliest teacher items and spreads the rest of the teacher's mass evenly over the
user's other unseen items (`pakd.distill.signals.head_distribution`). On a finished run
(default: `make run`'s), for each M and each trained student given, over every user:

  head mass      the share of the teacher's probability the head keeps (mean over users)
  loss error     |approximate KL - exact KL| / exact KL, the batch-mean loss over all users
  grad cosine    cosine between the approximate and the exact gradient of the loss with
                 respect to the student's scores (all users x items), and their norm ratio
  bytes          the memory each keeps for the teacher's distribution

::

    .venv/bin/python benchmarks/catalogue_head.py --run runs/default \\
        --out benchmarks/results/<dir>/catalogue_head.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=Path("runs/default"))
    ap.add_argument("--heads", default="64,256,512,1024")
    ap.add_argument("--students", default="fisher_kd_r80,dense_kd_r00",
                    help="stems under RUN/models/students")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    import torch

    from pakd.config import build_config, load_run_config
    from pakd.distill.losses import catalogue_terms
    from pakd.distill.signals import calibrate_temperature, head_distribution, \
        teacher_distribution
    from pakd.models import load
    from pakd.recipes.distill import _teacher
    from pakd.recipes.split import load_encoded
    from pakd.rundir import RunDir

    rd = RunDir(args.run)
    cfg = build_config(base=load_run_config(rd.config))
    cfg.quiet = True
    enc = load_encoded(cfg, rd)
    _, scores = _teacher(cfg, rd, enc)
    if scores is None:
        raise SystemExit("the run's teacher matrix is not cached: the exact loss needs it")
    from pakd.csr import csr_mask
    seen = csr_mask(enc.seen(("train",)), enc.n_items)
    T = cfg.distill.temperature
    scores = scores / calibrate_temperature(scores, seen, enc)
    probs, neg_entropy = teacher_distribution(scores, seen, T)
    rows, cols = seen.nonzero(as_tuple=True)
    heads = [int(h) for h in args.heads.split(",")]
    out = {"run": str(args.run), "users": enc.n_users, "items": enc.n_items,
           "temperature": T, "dense_bytes": enc.n_users * enc.n_items * 4, "heads": {}}
    approx = {m: head_distribution(scores, seen, T, m) for m in heads}
    for m, (items, p, unseen, tail, ne) in approx.items():
        out["heads"][m] = {"head_mass_mean": float(p.sum(1).mean()),
                           "head_mass_min": float(p.sum(1).min()),
                           "bytes": enc.n_users * (m * (4 + 4 + 1) + 4 + 4), "students": {}}
    for stem in args.students.split(","):
        student, _ = load(rd.root / "models" / "students" / stem)
        student.eval()
        with torch.no_grad():
            z0 = student.score_all(torch.arange(enc.n_users)).float()

        def loss_and_grad(**target):
            z = z0.clone().requires_grad_()
            _, kl = catalogue_terms(z, seen_rows=rows, seen_cols=cols, temperature=T, **target)
            kl.backward()
            return float(kl.detach()), z.grad

        exact, g_exact = loss_and_grad(teacher_probs=probs, teacher_neg_entropy=neg_entropy)
        for m, (items, p, unseen, tail, ne) in approx.items():
            got, g = loss_and_grad(teacher_probs=p, teacher_neg_entropy=ne,
                                   head=(items, unseen, tail))
            cos = float(torch.nn.functional.cosine_similarity(g.flatten(), g_exact.flatten(),
                                                              dim=0))
            out["heads"][m]["students"][stem] = {
                "exact_kl": exact, "approx_kl": got, "loss_rel_error": abs(got - exact) / exact,
                "grad_cosine": cos, "grad_norm_ratio": float(g.norm() / g_exact.norm())}
            print(f"{stem} M={m}: head mass {out['heads'][m]['head_mass_mean']:.3f}, "
                  f"KL {got:.4f} vs exact {exact:.4f} "
                  f"({100 * abs(got - exact) / exact:.2f}%), grad cosine {cos:.4f}",
                  flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
