"""The quality section of a run, as Markdown (in the figures of :func:`tomodenoise.report.metrics_lines`:
report.md, the UI artifact, the console table) and as the loud warning a run below baseline ends
with. One renderer for all of them."""

from __future__ import annotations

from typing import Any

__all__ = ["below_baseline_message", "fmt", "headline", "quality_markdown", "quality_rows"]


def fmt(value: Any, spec: str = ".2f") -> str:
    """A figure for a table: ``n/a`` for None, a number in ``spec``, anything else as text."""
    if value is None:
        return "n/a"
    try:
        return format(float(value), spec)
    except (TypeError, ValueError):
        return str(value)


def headline(q: dict[str, Any]) -> str:
    """One line: the network's gain over the tuned Gaussian and the verdict."""
    h = q.get("heldout") or {}
    status = q.get("status", "ok")
    tag = {"ok": "quality OK", "unchecked": "quality UNCHECKED"}.get(status, "QUALITY BELOW BASELINE")
    if status == "below_baseline" and q.get("reasons"):
        tag += f" ({'; '.join(q['reasons'])})"
    if not h:
        return f"{tag} ({'; '.join(q.get('notes') or []) or 'the network was not compared with the Gaussian'})"
    what = f"network {relative(h)} (sigma {h['gaussian_sigma']:.2g} px)"
    gain = h.get("gain_over_gaussian_db")
    if gain is not None:
        what += f", about {gain:+.1f} dB in error to the clean image"
    return f"{tag}: {what}"


def relative(h: dict[str, Any]) -> str:
    """The network's held-out N2I loss against the tuned Gaussian's, in words."""
    rel = (h["gaussian"] - h["network"]) / h["gaussian"] if h.get("gaussian") else 0.0
    if abs(rel) < 0.005:
        return "level with the tuned Gaussian"
    return f"{abs(100 * rel):.1f} % {'below' if rel > 0 else 'ABOVE'} the tuned Gaussian's held-out loss"


def quality_rows(q: dict[str, Any]) -> list[str]:
    """Markdown table rows ``| name | value |`` for the held-out losses and the three figures."""
    h, fig = q.get("heldout") or {}, q.get("figures") or {}
    rows = []
    if h:
        rows += [f"| held-out N2I loss: network | {fmt(h['network'], '.5g')} |",
                 f"| held-out N2I loss: input (no denoising) | {fmt(h['input'], '.5g')} |",
                 f"| held-out N2I loss: best Gaussian (sigma {h['gaussian_sigma']:.2g} px) | {fmt(h['gaussian'], '.5g')} |",
                 f"| network against the Gaussian | {relative(h)} |"]
        if h.get("gain_over_gaussian_db") is not None:
            rows.append(f"| network's gain over the Gaussian (estimated error to the clean image) | "
                        f"{h['gain_over_gaussian_db']:+.2f} dB |")
    th = q.get("thresholds") or {}
    for key, label in (("contrast_kept", "contrast kept"), ("edge_gradient_kept", "edge gradient kept"),
                       ("noise_removed", "noise removed")):
        if key in fig:
            low = th.get(key)
            rows.append(f"| {label}{f' (>= {low:g})' if low is not None else ''} | {fmt(fig[key], '.2f')} |")
    return rows


def quality_markdown(q: dict[str, Any]) -> list[str]:
    """The section: headline, table, reasons and remedy."""
    if not q:
        return []
    lines = ["## Quality (no ground truth needed)", "", f"**{headline(q)}**", "", "| check | value |", "|---|---|"]
    lines += quality_rows(q)
    if q.get("reasons"):
        lines += ["", "Why:"] + [f"- {r}" for r in q["reasons"]]
    if q.get("notes"):
        lines += ["", "Notes:"] + [f"- {r}" for r in q["notes"]]
    if q.get("remedy"):
        lines += ["", f"Remedy: {q['remedy']}."]
    return lines + [""]


def below_baseline_message(q: dict[str, Any]) -> str | None:
    """The one loud warning of a run below baseline (None when the run is fine)."""
    if q.get("status") != "below_baseline":
        return None
    return (f"QUALITY BELOW BASELINE: {'; '.join(q['reasons'])}. "
            f"Do not use this result as it is; {q['remedy']}. The store and the run are marked quality: below_baseline.")
