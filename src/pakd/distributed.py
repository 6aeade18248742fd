"""Many processes through PyTorch's own engine: torch.distributed, launched by torchrun.

``torchrun --nproc-per-node N -m pakd train --run RUN`` (or ``pakd train --nproc N``, which
launches exactly that) starts N copies of the command. Each reads what torchrun sets in its
environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) and joins one process group: gloo
on CPU, nccl on GPUs.

Training is data-parallel with the global batch of one process: every rank draws the same
batch and the same negatives from the same seeded generator, computes the loss of its own
contiguous slice weighted by the slice's share of the batch, and the gradients are summed
across ranks by one all-reduce per step over a flat buffer - the collective
DistributedDataParallel runs underneath; a pakd step calls the model through several
methods (forward, pair_logits, score_all), which DDP's forward hook would not see. Every
rank then applies the same update to the same weights, so N processes train the model one
process trains, up to the order of floating-point sums. Rank 0 alone writes files and
evaluates; the other ranks wait for it where they need its files.
"""
from __future__ import annotations

import os
from datetime import timedelta
import subprocess
import sys

from .errors import PakdError


class _OnFirstUse:
    """A module imported when first used: commands that never train (``data info``,
    ``config show``) then never load torch (~200 MB and a second or two)."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr):
        import importlib
        return getattr(importlib.import_module(self._name), attr)


torch = _OnFirstUse("torch")
dist = _OnFirstUse("torch.distributed")

# how long a rank waits for the others (rank 0 alone evaluates, or runs a whole stage under
# `pakd run`, while the others wait at a barrier)
WAIT = timedelta(hours=12)


def launched() -> bool:
    """Started by torchrun (or another launcher) as one of several processes?"""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def init(device: str = "cpu") -> None:
    """Join the process group torchrun describes (a no-op for a single process)."""
    if not launched() or dist.is_initialized():
        return
    if device == "cuda":
        if not (torch.cuda.is_available() and dist.is_nccl_available()):
            raise PakdError("--device cuda under torchrun needs GPUs and NCCL; this machine "
                            "has none: drop --device cuda (gloo on CPU is used then)")
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl", timeout=WAIT)
    else:
        if not dist.is_gloo_available():
            raise PakdError("this PyTorch build has no gloo backend for CPU processes; "
                            "install the official torch wheel")
        dist.init_process_group("gloo", timeout=WAIT)


def close(ok: bool = True) -> None:
    """Leave the process group; after a command that succeeded, together (a barrier
    first): a rank that tore its group down while rank 0 still wrote the reports sometimes
    aborted in gloo's teardown ("terminate called without an active exception"), failing
    a command whose work was done. After a failure nobody waits: torchrun stops the rest."""
    if "torch.distributed" in sys.modules and dist.is_initialized():
        if ok and world() > 1:
            dist.barrier()
        dist.destroy_process_group()


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if world() > 1:
        dist.barrier()


def shard(n: int) -> slice:
    """This rank's contiguous share of ``n`` rows (the first ``n % world`` ranks get one
    more)."""
    w, r = world(), rank()
    base, extra = divmod(n, w)
    start = r * base + min(r, extra)
    return slice(start, start + base + (1 if r < extra else 0))


def sum_gradients(model: torch.nn.Module) -> int:
    """Sum every parameter's gradient over the ranks, in one all-reduce; returns the bytes
    each rank sent. A parameter no rank touched keeps ``grad`` None, as in one process
    (AdamW then leaves it alone); one touched anywhere gets the sum, zeros included."""
    if world() == 1:
        return 0
    params = list(model.parameters())
    flags = torch.tensor([p.grad is not None for p in params], dtype=torch.float32)
    flat = torch.cat([flags] + [(p.grad if p.grad is not None else torch.zeros_like(p))
                                .reshape(-1).float() for p in params])
    dist.all_reduce(flat)
    touched = flat[:len(params)] > 0
    pos = len(params)
    for p, t in zip(params, touched.tolist()):
        n = p.numel()
        p.grad = flat[pos:pos + n].view_as(p).to(p.dtype).clone() if t else None
        pos += n
    return flat.numel() * flat.element_size()


def sum_(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over the ranks (in place; returned for chaining)."""
    if world() > 1:
        dist.all_reduce(t)
    return t


def from_main(obj):
    """Rank 0's ``obj`` on every rank (picklable objects: settings, metrics)."""
    if world() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_all(obj) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if world() == 1:
        return [obj]
    out = [None] * world()
    dist.all_gather_object(out, obj)
    return out


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``pakd <argv>`` as ``nproc`` processes under torchrun; returns its exit code."""
    cores = os.cpu_count() or 1
    if nproc < 1:
        raise PakdError(f"--nproc {nproc}: give at least 1 process")
    if nproc > cores and not torch.cuda.is_available():
        raise PakdError(f"--nproc {nproc} is more processes than this machine has CPU cores "
                        f"({cores}); use --nproc {cores} or fewer, or run torchrun across "
                        "several machines (see the README)")
    if not _has_module("torch.distributed.run"):
        raise PakdError("torchrun is not available with this PyTorch; install torch>=2.0")
    # torchrun's own parser takes --run for an abbreviation of its --run-path: pass the
    # run directory by pakd's other spelling of it, --out
    argv = ["--out" if a == "--run" else "--out=" + a[6:] if a.startswith("--run=") else a
            for a in argv]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={nproc}", "-m", "pakd", *argv]
    return subprocess.call(cmd)


def _has_module(name: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(name) is not None
