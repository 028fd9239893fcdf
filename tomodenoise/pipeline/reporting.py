"""The report stage: metrics (with and without ground truth), PNG previews, a Markdown page.

Dynamic scans add the PSNR per time step and a strip of a few time steps (truth, FBP,
denoised); XRD-CT scans add the PSNR per channel and over the whole spectrum, the spectra of
a few pixels and a grid of a few channel maps.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..config import RunConfig
from ..io.store import ScanStore
from ..quality.report import below_baseline_message
from ..report import report_markdown, spectrum_pixels, write_grid, write_previews, write_spectra
from .keys import scan_id_for
from .reconstruction import load_splits, volume_shape

__all__ = ["reference_shape", "report"]

log = logging.getLogger("tomodenoise.report")


def reference_shape(given: tuple[int, ...], shape: tuple[int, int, int], image: tuple[int, int]) -> tuple[int, ...]:
    """How a reference of shape ``given`` becomes ``(time, channel, z, y, x)`` (the leading 1s to
    add), or ``ValueError``; ``(z, y, x)`` is accepted for one volume, ``(channel, z, y, x)`` for
    one time step."""
    want = (*shape, *image)
    given = tuple(int(n) for n in given)
    if given == want:
        return ()
    if len(given) == 3 and (1, 1, *given) == want:
        return (1, 1)
    if len(given) == 4 and given == want[1:] and shape[0] == 1:
        return (1,)
    raise ValueError(f"reference shape {given} does not match the denoised volume (time, channel, z, y, x) = {want}")


def _check_reference(reference: np.ndarray, shape: tuple[int, int, int], image: tuple[int, int]) -> np.ndarray:
    """The reference as ``(time, channel, z, y, x)`` (see :func:`reference_shape`)."""
    ref = np.asarray(reference, dtype=np.float32)
    return ref.reshape(*reference_shape(ref.shape, shape, image), *ref.shape)


def _psnr(ref: np.ndarray, img: np.ndarray, rng: float) -> float:
    from .. import metrics

    shape = ref.shape[-2:]
    return float(metrics.psnr(ref.reshape(-1, *shape), img.reshape(-1, *shape), data_range=rng))


def report(store: ScanStore, cfg: RunConfig, reference: np.ndarray | None = None) -> dict[str, Any]:
    """Metrics (with and without ground truth), PNG previews and a Markdown summary.

    ``reference`` is an optional clean volume (simulations) for PSNR/SSIM: ``(z, y, x)``, or
    ``(time, channel, z, y, x)`` for dynamic and XRD-CT scans.
    """
    from .. import metrics

    shape = volume_shape(store)
    nt, nc, nz = shape
    splits = load_splits(store)
    k, _, ny, nx = splits.shape
    fbp = splits.mean(axis=0)  # the mean of the K split FBPs is the full FBP (linearity)
    den = np.asarray(store.array("denoised")[:], dtype=np.float32).reshape(-1, ny, nx)
    out: dict[str, Any] = {"modality": store.attrs.get("modality", "static"), "fbp": {}, "denoised": {}}
    # Unsupervised: noise level of one split from two independent splits.
    noise_var = float(np.mean((splits[0] - splits[1]) ** 2) / 2.0)
    out["split_noise_std"] = float(np.sqrt(noise_var))
    out["fbp"]["noise_std_estimate"] = float(np.sqrt(noise_var / k))
    ref5 = None
    if reference is not None:
        ref5 = _check_reference(reference, shape, (ny, nx))
        ref = ref5.reshape(-1, ny, nx)
        rng = float(ref.max() - ref.min())
        for name, img in (("fbp", fbp), ("denoised", den)):
            out[name]["psnr"] = float(metrics.psnr(ref, img, data_range=rng))
            out[name]["ssim"] = float(metrics.ssim(ref, img, data_range=rng))
    fbp5, den5 = fbp.reshape(nt, nc, nz, ny, nx), den.reshape(nt, nc, nz, ny, nx)
    ds = store.open()
    if nt > 1 and ref5 is not None:
        rng = float(ref5.max() - ref5.min())
        out["per_time"] = [{"time": float(ds["time"].values[t]),
                            "fbp_psnr": _psnr(ref5[t], fbp5[t], rng), "denoised_psnr": _psnr(ref5[t], den5[t], rng)}
                           for t in range(nt)]
    if nc > 1 and ref5 is not None:
        out["per_channel"] = []
        for c in range(nc):
            r = ref5[:, c]
            rng_c = float(r.max() - r.min()) or 1.0
            out["per_channel"].append({"channel": float(ds["channel"].values[c]), "fbp_psnr": _psnr(r, fbp5[:, c], rng_c),
                                       "denoised_psnr": _psnr(r, den5[:, c], rng_c)})
        for name in ("fbp", "denoised"):
            out[name]["psnr_mean_over_channels"] = float(np.mean([e[f"{name}_psnr"] for e in out["per_channel"]]))
    stages = store.attrs.get("stages", {})
    out["stages"] = {k_: v.get("seconds") for k_, v in stages.items()}
    if "train" in stages:
        out["denoised"]["best_val_loss"] = stages["train"].get("best_val_loss")
    out["quality"] = _quality(store, cfg, splits, den, shape, stages.get("train") or {})
    store.report_dir.mkdir(parents=True, exist_ok=True)
    (store.report_dir / "metrics.json").write_text(json.dumps(out, indent=2))
    title = scan_id_for(cfg)
    if nt * nc > 1:  # previews of the middle time step and channel; the others in the grids below
        mid = (nt // 2, nc // 2)
        what = f"{title}, time step {mid[0]}" if nt > 1 else f"{title}, channel {mid[1]}"
        pngs = write_previews(store.report_dir, fbp5[mid], den5[mid], n=cfg.output.previews, title=what)
    else:
        pngs = write_previews(store.report_dir, fbp, den, n=cfg.output.previews, title=title)
    pngs += _modality_plots(store, ds, fbp5, den5, ref5, title)
    (store.report_dir / "report.md").write_text(report_markdown(store.root))  # what the console and the UI show
    store.mark_stage("report", previews=[p.name for p in pngs], quality=out["quality"].get("status"))
    loud = below_baseline_message(out["quality"])
    if loud:
        log.warning("%s", loud)
    return out


def _quality(store: ScanStore, cfg: RunConfig, splits: np.ndarray, den: np.ndarray, shape: tuple[int, int, int],
             train_info: dict[str, Any]) -> dict[str, Any]:
    """The quality check without ground truth (:mod:`tomodenoise.quality`), recorded in the store's
    attributes as ``quality`` (``status``: ``ok`` or ``below_baseline``)."""
    from ..quality import heldout_losses, quality_figures, quality_verdict
    from ..train import load_checkpoint, resolve_device
    from .training import training_data, uses_channel_normalisation

    nt, nc, nz = shape
    k, _, ny, nx = splits.shape
    mid = (nt // 2) * nc * nz + (nc // 2) * nz  # first image of the middle time step and channel
    figures = quality_figures(splits[:, mid:mid + nz], den[mid:mid + nz]).as_dict()
    heldout, missing = None, None
    best = store.model_dir / "best.pt"
    try:
        if not best.exists():
            missing = "no trained model (model/best.pt)"
        else:
            device = resolve_device(cfg.inference.device)
            model, meta = load_checkpoint(best, device=device)
            if not meta.get("val_slices"):
                missing = "no held-out slices (train.val_fraction = 0 or a single slice)"
            else:
                data, vshape = splits, shape
                if uses_channel_normalisation(store, cfg):  # what the network saw
                    data, vshape, _ = training_data(store, cfg)
                heldout = heldout_losses(model, meta, data, meta["val_slices"], volume_shape=vshape, device=device,
                                         batch_size=int(cfg.inference.batch_size))
    except Exception as exc:  # a figure for people: never fails the run, but says why it is missing
        missing = f"the held-out comparison failed ({type(exc).__name__}: {exc})"
        log.warning("the held-out N2I comparison could not be computed: %s", exc)
        log.debug("held-out comparison", exc_info=True)
    q = quality_verdict(heldout, figures, train_info.get("budget"), missing=missing)
    q.update(heldout=heldout, figures=figures)
    store.update_attrs(quality={"status": q["status"], "reasons": q["reasons"], "remedy": q["remedy"]})
    return q


def _picks(n: int, m: int = 4) -> list[int]:
    return sorted(set(np.linspace(0, n - 1, min(m, n)).round().astype(int).tolist()))


def _modality_plots(store: ScanStore, ds: Any, fbp5: np.ndarray, den5: np.ndarray, ref5: np.ndarray | None,
                    title: str) -> list[Path]:
    nt, nc, nz = fbp5.shape[:3]
    zm = nz // 2
    paths = []
    if nt > 1:
        ts = _picks(nt)
        rows = {} if ref5 is None else {"truth": ref5[ts, 0, zm]}
        rows.update({"FBP": fbp5[ts, 0, zm], "denoised": den5[ts, 0, zm]})
        unit = ds["time"].attrs.get("units", "")
        cols = [f"t{t}: {float(ds['time'].values[t]):.3g} {unit}".strip() for t in ts]
        paths.append(write_grid(store.report_dir / "time_strip.png", rows, cols, title=f"{title}: slice {zm}"))
    if nc > 1:
        chan = np.asarray(ds["channel"].values, dtype=np.float64)
        label = f"{ds['channel'].attrs.get('long_name', 'channel')} ({ds['channel'].attrs.get('units', '')})"
        base = ref5 if ref5 is not None else den5
        pix = spectrum_pixels(base[0, :, zm], min_distance=3)
        order = np.argsort(base[0, :, zm].reshape(nc, -1).max(axis=1))[::-1]
        spectra = {} if ref5 is None else {"truth": np.stack([ref5[0, :, zm, y, x] for y, x in pix])}
        spectra.update({"FBP": np.stack([fbp5[0, :, zm, y, x] for y, x in pix]),
                        "denoised": np.stack([den5[0, :, zm, y, x] for y, x in pix])})
        paths.append(write_spectra(store.report_dir / "spectra.png", chan, spectra,
                                   [f"pixel (y={y}, x={x})" for y, x in pix], channel_label=label,
                                   title=f"{title}: slice {zm}"))
        cs = [int(c) for c in sorted(order[:4])]
        rows = {} if ref5 is None else {"truth": ref5[0, cs, zm]}
        rows.update({"FBP": fbp5[0, cs, zm], "denoised": den5[0, cs, zm]})
        paths.append(write_grid(store.report_dir / "channel_maps.png", rows, [f"{chan[c]:.3g}" for c in cs],
                                title=f"{title}: channels ({label}), slice {zm}"))
    return paths
