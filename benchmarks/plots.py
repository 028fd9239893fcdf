"""Pictures of the benchmarks: PSNR against training time, one curve per run."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

__all__ = ["write_curves"]


def write_curves(path: Path, curves: dict[str, list[dict[str, Any]]], *, levels: dict[str, float] | None = None,
                 title: str = "", key: str = "psnr", ylabel: str = "PSNR [dB]") -> Path:
    """Plot ``key`` against training minutes for every curve (``[{"seconds", key}, ...]``),
    with horizontal lines at ``levels`` (label -> value); writes ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for name, curve in curves.items():
        pts = [(p["seconds"] / 60.0, p[key]) for p in curve if p.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", markersize=3, label=name)
    for i, (label, value) in enumerate((levels or {}).items()):
        if value is not None:
            ax.axhline(value, color=f"C{7 + i % 3}", linestyle="--", linewidth=1, label=label)
    ax.set_xlabel("training time [min]")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("\n".join(textwrap.wrap(title, 95)), fontsize=9)  # a long machine line stays readable
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
