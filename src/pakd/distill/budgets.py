"""Student sizes: one setting (``distill.budgets``) whose entries are sizes or ratios.

An entry is
- ``"3%"``: a share of the parameters of the origin report's three members (SVD + xDeepFM +
  AutoInt of the run) - the yardstick a user budgets against, however large the actual
  teacher is (EASE alone holds items^2 weights);
- ``"48000"`` (or ``"48k"``): that many parameters;
- ``"0.4"`` (a number in (0, 1)): the pruning ratio - the share of the dense student's
  parameters removed.
Each becomes a parameter target for the dense student (`Budget.target`); the pruner fills
it to less than one unit. Rows of the sweep carry the entry as their ``budget`` label.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..errors import PakdError

_PCT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
_ABS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*$")


@dataclass(frozen=True)
class Budget:
    label: str                 # as the user wrote it, normalised ("3%", "48000", "0.4")
    kind: str                  # "share" (of the origin members), "params", "ratio"
    value: float

    def target(self, dense: int, origin: int | None) -> int:
        """Parameters the student may keep."""
        if self.kind == "ratio":
            return int(math.floor(dense * (1 - self.value)))
        if self.kind == "params":
            return int(self.value)
        if origin is None:
            raise PakdError(f"budget {self.label} is a share of the three origin members "
                            "(svd, xdeepfm, autoint), whose size is not known here: give "
                            "budgets as parameters (48000) or ratios (0.4)")
        return int(math.floor(origin * self.value / 100))


def parse(entry) -> Budget:
    """One entry of ``distill.budgets`` (a string or a number); raises ValueError naming
    the accepted forms."""
    text = str(entry).strip()
    m = _PCT.match(text)
    if m:
        v = float(m.group(1))
        if not 0 < v < 100:
            raise ValueError(f"budget {text}: a share must lie between 0% and 100%")
        return Budget(f"{v:g}%", "share", v)
    m = _ABS.match(text)
    if m:
        v = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[m.group(2).lower()]
        if m.group(2) == "" and 0 < v < 1:
            return Budget(f"{v:g}", "ratio", v)
        if v >= 1 and v == int(v):
            return Budget(str(int(v)), "params", v)
    raise ValueError(f"budget {text!r}: give a share of the origin members (3%), a "
                     "parameter count (48000 or 48k) or a pruning ratio in (0, 1) (0.4)")


def targets(budgets: list[Budget], dense: int, origin: int | None,
            least: int = 1) -> dict[str, int]:
    """label -> parameter target of each budget for a dense student of ``dense``
    parameters; a budget at or above the dense size, or below the ``least`` the student
    can keep, stops here with the fix named."""
    out: dict[str, int] = {}
    for b in budgets:
        t = b.target(dense, origin)
        if t >= dense:
            raise PakdError(f"budget {b.label} is {t:,} parameters, not below the dense "
                            f"student's {dense:,}: that student is dense_kd; give a smaller "
                            "budget or a wider student")
        if t < least:
            raise PakdError(f"budget {b.label} is {t:,} parameters, below the {least:,} the "
                            "student keeps with one unit per group and the group floor: give a "
                            "larger budget, a lower --group-floor, or a narrower student")
        out[b.label] = t
    if len(set(out.values())) != len(out) or len(out) != len(budgets):
        raise PakdError(f"budgets {', '.join(b.label for b in budgets)} give the same size "
                        "twice; give each size once")
    return out


def budget_of(row: dict) -> str | None:
    """A result row's budget label: its ``budget``, or for rows kept before budgets (a
    pruning ratio per row) that ratio; None for the teacher and its members."""
    if "budget" in row:
        return row["budget"]
    if row.get("method") == "dense_kd":
        return "dense"
    r = row.get("pruning_ratio")
    return None if r is None else f"{r:g}"
