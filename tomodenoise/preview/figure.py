"""The centre preview's picture: 7 panels and the score curve in one 2 x 4 grid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .compute import REMEDY, CentrePreview

__all__ = ["write_preview_png"]


def write_preview_png(preview: CentrePreview, path: str | Path, *, name: str = "") -> Path:
    """The 7 panels and the score curve in one 2 x 4 grid, the centre and remedy in the title.

    The PNG's text chunk ``tomodenoise`` holds :meth:`CentrePreview.to_json`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pv = preview
    ref = pv.panels[int(np.argmin(np.abs(pv.offsets)))]
    n = ref.shape[-1]
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    inside = ref[yy ** 2 + xx ** 2 <= (n / 2) ** 2]
    vmin, vmax = (float(v) for v in np.percentile(inside, [0.5, 99.5]))
    vmax = vmax if vmax > vmin else vmin + 1.0
    fig, axes = plt.subplots(2, 4, figsize=(18, 9.8), constrained_layout=True)
    for ax, o, c, img in zip(axes.flat, pv.offsets, pv.centres, pv.panels):
        ax.imshow(img, cmap="gray", vmin=vmin, vmax=vmax)
        ax.set_xticks([])
        ax.set_yticks([])
        if o == 0:
            ax.set_title(f"{c:.2f}  ({pv.method})", color="tab:red", fontweight="bold")
            for sp in ax.spines.values():
                sp.set_color("tab:red")
                sp.set_linewidth(3)
        else:
            ax.set_title(f"{c:.2f}  ({o:+g} px)")
    ax = axes.flat[len(pv.offsets)]
    if pv.curve_centres.size:
        ax.plot(pv.curve_centres, pv.curve_scores, "o-", ms=3, color="tab:blue")
        ax.axvline(pv.center, color="tab:red", lw=2, label=f"chosen {pv.center:.2f}")
        for c in pv.centres:
            ax.axvline(c, color="0.6", lw=0.8, ls=":")
        m = pv.curve_minimum
        if np.isfinite(m):
            ax.plot([m], [np.nanmin(pv.curve_scores)], "v", color="tab:green", ms=9, label=f"minimum {m:.2f}")
        ax.legend(loc="best")
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.ticklabel_format(axis="x", useOffset=False)
    ax.set_xlabel("candidate centre (detector column)")
    ax.set_ylabel(pv.score_name)
    ax.set_title("centre finder's score")
    for extra in axes.flat[len(pv.offsets) + 1:]:
        extra.set_axis_off()
    where = f"slice z={pv.z}, " if pv.z is not None else ""
    fig.suptitle(f"{name + ': ' if name else ''}centre of rotation {pv.center:.2f} ({pv.method})  |  {where}central "
                 f"{n} px at full resolution, {pv.n_angles_used} of {pv.n_angles} projections, quick Gaussian "
                 f"sigma {pv.sigma:.2f} px\n{REMEDY}", fontsize=14)
    fig.savefig(path, dpi=80, metadata={"Title": f"centre of rotation {pv.center:.2f}",
                                        "tomodenoise": json.dumps(pv.to_json())})
    plt.close(fig)
    return path
