"""The quality verdict of a run: does the network beat the tuned Gaussian, keep the object's
contrast and edges, and remove most of the noise? When not, ``quality: below_baseline``
with the reasons and the remedy, so a watcher or a data-management system can hold it back.
"""

from __future__ import annotations

from typing import Any

__all__ = ["THRESHOLDS", "quality_verdict", "remedy"]

#: The run is below baseline when a figure falls under these (contrast, edges, noise removed).
THRESHOLDS = {"contrast_kept": 0.85, "edge_gradient_kept": 0.7, "noise_removed": 0.5}


def remedy(budget: dict[str, Any] | None, minutes: float | None = None) -> str:
    """What to do about a result below baseline."""
    if budget and budget.get("short") and budget.get("warning"):
        w = budget["warning"]
        return w[w.index("give it"):] if "give it" in w else w
    m = 2 * (minutes or (budget or {}).get("minutes") or 10)
    return (f"train longer (--set train.max_minutes={m:g}) or on a GPU; if the preview shows a wrong centre, "
            f"set preprocess.center")


def quality_verdict(heldout: dict[str, Any] | None, figures: dict[str, Any] | None,
                    budget: dict[str, Any] | None = None, missing: str | None = None) -> dict[str, Any]:
    """``{"status": "ok" | "below_baseline" | "unchecked", "reasons": [...], "notes": [...], "remedy": ...}``.

    ``unchecked``: the network could not be compared with the Gaussian (``missing`` says why) and
    no figure fell below its threshold; the figures alone do not make a run ``ok``.
    """
    reasons, notes = [], []
    if heldout is not None and not heldout.get("beats_gaussian", True):
        reasons.append(f"the network's held-out N2I loss {heldout['network']:.4g} does not beat the tuned Gaussian's "
                       f"{heldout['gaussian']:.4g} (sigma {heldout['gaussian_sigma']:.2g} px)")
    for key, low in THRESHOLDS.items():
        v = (figures or {}).get(key)
        if v is not None and v < low:
            what = key.replace("_", " ")
            reasons.append(f"{what} {v:.2f} < {low:g}")
    if budget and budget.get("short"):
        notes.append(f"training ran {budget.get('steps')} of the ~{budget.get('steps_needed')} steps this recipe needs")
    if heldout is None:
        notes.append(f"the network was not compared with the tuned Gaussian: {missing or 'no held-out comparison'}")
    status = "below_baseline" if reasons else ("unchecked" if heldout is None else "ok")
    return {"status": status, "reasons": reasons, "notes": notes,
            "remedy": remedy(budget) if reasons else None, "thresholds": dict(THRESHOLDS)}
