"""Markdown tables from lists of dicts."""
from __future__ import annotations

import math


def fmt(v, digits: int = 4) -> str:
    """A cell: numbers to ``digits`` decimals (thousands grouped; tiny ones in scientific
    notation rather than as zero), booleans as yes/no, a [low, high] pair as a range, other
    lists comma-separated; never a Python repr of a list or dict."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if v != 0 and abs(v) < 0.5 * 10 ** -digits:   # would print as zero
            return f"{v:.2e}"
        return f"{v:.{digits}f}"
    if isinstance(v, (list, tuple)) and all(isinstance(x, (int, float)) for x in v):
        return "–".join(fmt(x, digits) for x in v) if v else "–"
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt(x, digits) for x in v) if v else "–"
    if isinstance(v, dict):
        return ", ".join(f"{k} {fmt(x, digits)}" for k, x in v.items()) or "–"
    return str(v)


def markdown_table(rows: list[dict], columns: list[tuple], digits: int = 4) -> str:
    """columns: (key, header) or (key, header, digits) tuples."""
    head = "| " + " | ".join(c[1] for c in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(fmt(r.get(c[0]), c[2] if len(c) > 2 else digits)
                              for c in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])
