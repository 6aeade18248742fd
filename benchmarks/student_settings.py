"""Distil one tower student from a finished run's teacher with explicit settings and print
its valid NDCG@10 and RMSE (the settings study behind the tower student's defaults:
benchmarks/results/2026-12-06_student_settings/). The teacher's signals are cached in
--cache after the first call. Valid part only: nothing here reads the test part.

    python benchmarks/student_settings.py --run runs/base --alpha 1.0 --label 0.3 \
        --crit fisher --target 61724
"""
import time, argparse, torch, yaml
from pathlib import Path
from pakd.rundir import RunDir
from pakd.data import load_encoded
from pakd.scores import teacher_scores
from pakd.distill.signals import teacher_signals
from pakd.distill.loop import distill
from pakd.distill.objective import Losses, validate
from pakd.models import build
from pakd.models.tower import tower_tables
from pakd.prune import criterion as make_criterion

ap = argparse.ArgumentParser()
ap.add_argument("--run", default="runs/base")
ap.add_argument("--cache", default="runs/base/student_settings_signals.pt")
ap.add_argument("--dim", type=int, default=64); ap.add_argument("--rank", type=int, default=64)
ap.add_argument("--rate", type=int, default=32); ap.add_argument("--buckets", type=int, default=8)
ap.add_argument("--epochs", type=int, default=16); ap.add_argument("--lr", type=float, default=0.01)
ap.add_argument("--l2", type=float, default=0.05); ap.add_argument("--kd-ranking", default="kl")
ap.add_argument("--crit", default=None); ap.add_argument("--target", type=int, default=None)
ap.add_argument("--tasks", default="ranking,rating"); ap.add_argument("--label", type=float, default=1.0)
ap.add_argument("--kdr", type=float, default=2.0); ap.add_argument("--kdk", type=float, default=1.0)
ap.add_argument("--top", type=int, default=50); ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--bs", type=int, default=2048); ap.add_argument("--user-side", default="tower")
ap.add_argument("--alpha", type=float, default=0.5)
ap.add_argument("--save", default=None); ap.add_argument("--init", default=None); ap.add_argument("--until", type=float, default=0.3)
a = ap.parse_args()
torch.set_num_threads(a.threads)
rd = RunDir(a.run)
from pakd.config.resolve import build_config
cfg = build_config(base=yaml.safe_load(open(rd.root / "run.yaml")))
enc = load_encoded(cfg, rd)
cache = Path(a.cache)
t0 = time.time()
if cache.exists():
    signals, teacher_valid = torch.load(cache, weights_only=False)
else:
    teacher, scores = teacher_scores(cfg, rd, enc)
    signals = teacher_signals(teacher, enc, scores, list_top=100, feature_dim=32, quiet=True,
                              temperature=1.0, unobserved=1, seed=0)
    v = validate(teacher, enc)
    teacher_valid = {"rmse": v["valid_rmse"], "ndcg@10": v["valid_ndcg@10"]}
    torch.save((signals, teacher_valid), cache)
print("signals", time.time() - t0, teacher_valid, flush=True)
tables, arch = tower_tables(enc, a.buckets, users_with_rows=a.user_side == "table")
arch.update(dim=a.dim, rank_dims=a.rank, rate_dims=a.rate, user_side=a.user_side, alpha=a.alpha)
if a.user_side == "table":
    arch.update(user_dims=a.dim)
torch.manual_seed(0)
st = build("tower_student", enc.schema, arch, tables=tables, rating_mean=float(enc.parts["train"].rating.mean()))
if a.init:
    st.load_state_dict(torch.load(a.init))
print("params", st.n_params(), flush=True)
dc = cfg.distill.model_copy(update={"epochs": a.epochs, "lr": a.lr, "l2": a.l2, "batch_size": a.bs, "patience": 4})
losses = Losses(frozenset(a.tasks.split(",")) if a.tasks else frozenset(), a.kdr, a.kdk, 0.2, a.label, 30, 128, "full", "catalogue", a.kd_ranking, a.top)
gen = torch.Generator().manual_seed(0)
crit = make_criterion(a.crit, model=st, gen=gen) if a.crit else None
t0 = time.time()
res = distill(st, enc, signals, losses=losses, settings=dc, criterion=crit, target=a.target,
              prune_until=a.until, prune_steps=6, teacher_valid=teacher_valid, gen=gen, quiet=True, group_floor=0.05)
for h in res.history:
    print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in h.items()}, flush=True)
v = validate(res.model, enc)
if a.save: torch.save(res.model.state_dict(), a.save)
print("final", res.model.n_params(), v, "ret", v["valid_ndcg@10"] / teacher_valid["ndcg@10"], v["valid_rmse"] / teacher_valid["rmse"], "secs", time.time() - t0)
