"""Shared plot helpers: one marker, colour and line per method, so equal points stay
visible; atomic PNG writes."""
from __future__ import annotations

from pathlib import Path

METHOD_STYLE = {
    "fisher_kd": {"color": "tab:blue", "marker": "o", "linestyle": "-"},
    "magnitude_kd": {"color": "tab:orange", "marker": "s", "linestyle": "--"},
    "random_kd": {"color": "tab:green", "marker": "^", "linestyle": "-."},
    "fisher_ft": {"color": "tab:red", "marker": "D", "linestyle": ":"},
    "scratch": {"color": "tab:purple", "marker": "v", "linestyle": (0, (5, 1))},
    "final_kd": {"color": "tab:brown", "marker": "P", "linestyle": (0, (3, 1, 1, 1))},
    "mf_labels": {"color": "tab:pink", "marker": "X", "linestyle": (0, (1, 1))},
    "dense_kd": {"color": "tab:cyan", "marker": "h", "linestyle": "-"},
    "fisher_kd_no_ranking": {"color": "tab:olive", "marker": "<", "linestyle": "none"},
    "fisher_kd_no_rating": {"color": "tab:olive", "marker": ">", "linestyle": "none"},
    "fisher_kd_no_feature": {"color": "tab:olive", "marker": "d", "linestyle": "none"},
}


def style(method: str, alpha: float = 1.0) -> dict:
    """Matplotlib line style of a method (hollow markers, so coinciding points show)."""
    st = dict(METHOD_STYLE.get(method, {"color": "tab:gray", "marker": "x", "linestyle": "-"}))
    st.update(markersize=7, markerfacecolor="none", markeredgewidth=1.5, alpha=alpha)
    return st


def save_figure(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt
    import io
    from ..atomic import atomic_write_bytes
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=110, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())   # no half-written figure, even out of space
    return path
