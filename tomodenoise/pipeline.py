"""The pipeline's stages as plain functions on a scan store (no Prefect, no Dask).

Each stage reads from and writes to ``<out>/<scan_id>/`` (see :mod:`tomodenoise.io.store`)
and marks itself complete there only when all its output is written. The Prefect flows
(``flows/``) call exactly these functions, cutting the reconstruction into one task per
chunk; a notebook can call them directly::

    from tomodenoise.config import RunConfig
    from tomodenoise import pipeline
    cfg = RunConfig.from_file("run.yaml")
    store = pipeline.run(cfg)
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .config import RunConfig
from .io.store import ScanStore, z_slabs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Chunk:
    """One unit of reconstruction work: one split, time step, channel and z-slab."""

    split: int
    time: int
    channel: int
    z_start: int
    z_stop: int

    @property
    def region(self) -> tuple[int, int, int, slice]:
        return (self.split, self.time, self.channel, slice(self.z_start, self.z_stop))


def scan_id_for(cfg: RunConfig) -> str:
    """The output folder name: ``input.scan_id`` or the input's file stem."""
    if cfg.input.scan_id:
        return cfg.input.scan_id
    if not cfg.input.path:
        raise ValueError("input.path is not set")
    p = Path(cfg.input.path)
    name = p.name
    for suffix in (".zarr", ".nxs", ".h5", ".hdf5", ".hdf", ".npz", ".npy", ".tif", ".tiff"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name or "scan"


def store_for(cfg: RunConfig) -> ScanStore:
    root = Path(cfg.output.root).expanduser().resolve()
    return ScanStore(root / scan_id_for(cfg))


# --- ingest --------------------------------------------------------------------------------
def ingest(cfg: RunConfig) -> ScanStore:
    """Read the raw scan, preprocess it and write the sinogram store.

    Input errors are raised by the readers before anything is written.
    """
    from .io import read_scan
    from .preprocess import preprocess

    if not cfg.input.path:
        raise ValueError("input.path is not set: give the scan to denoise")
    store = store_for(cfg)
    if store.exists() and store.stage_done("ingest") and _same_config(store, cfg):
        log.info("ingest already complete in %s", store.zarr_path)
        return store
    t0 = time.perf_counter()
    raw = read_scan(
        cfg.input.path,
        format=cfg.input.format,
        angles_file=cfg.input.angles_file,
        angles_unit=cfg.input.angles_unit,
        slices=cfg.input.slices,
    )
    pre = preprocess(raw, center=cfg.preprocess.center, log_min=cfg.preprocess.log_min,
                     center_search=cfg.preprocess.center_search)
    sino = np.asarray(pre.sinogram, dtype=np.float32)
    n_det = sino.shape[-1]
    z0 = cfg.input.slices[0] if cfg.input.slices else 0
    geometry = {
        "center": float(pre.center),
        "n_det": int(n_det),
        "n_pixels": int(cfg.recon.n_pixels or n_det),
        "beam": "parallel",
    }
    store = ScanStore.create(
        store.root, sino[None, None], pre.angles,
        z=np.arange(z0, z0 + sino.shape[0]), z_chunk=cfg.recon.z_chunk,
        attrs={
            "scan_id": scan_id_for(cfg),
            "source": str(raw.source),
            "config": cfg.model_dump(mode="json"),
            "geometry": geometry,
            "preprocess": dict(pre.info, n_clamped=int(pre.n_clamped)),
        },
    )
    store.mark_stage("ingest", seconds=round(time.perf_counter() - t0, 3), center=float(pre.center),
                     n_clamped=int(pre.n_clamped))
    return store


def _same_config(store: ScanStore, cfg: RunConfig) -> bool:
    return store.attrs.get("config") == cfg.model_dump(mode="json")


# --- reconstruct ---------------------------------------------------------------------------
def recon_chunks(store: ScanStore, cfg: RunConfig) -> list[Chunk]:
    """All reconstruction chunks: (split, time, channel, z-slab)."""
    ds = store.open()
    out = []
    for split in range(cfg.splits.k):
        for t in range(ds.sizes["time"]):
            for c in range(ds.sizes["channel"]):
                for zs in z_slabs(ds.sizes["z"], store.z_chunk):
                    out.append(Chunk(split, t, c, zs.start, zs.stop))
    return out


def prepare_reconstruct(store: ScanStore, cfg: RunConfig) -> list[Chunk]:
    """Create the ``recon`` array (if absent) and list the chunks still to compute."""
    n = int(store.attrs["geometry"]["n_pixels"])
    store.init_array("recon", {"split": cfg.splits.k, "y": n, "x": n})
    done = set(map(tuple, store.attrs.get("recon_chunks_done", [])))
    return [c for c in recon_chunks(store, cfg) if (c.split, c.time, c.channel, c.z_start) not in done]


def reconstruct_chunk(store: ScanStore, cfg: RunConfig, chunk: Chunk) -> Chunk:
    """Reconstruct one split of one z-slab and write it as one whole Zarr chunk."""
    from .recon import fbp, sirt
    from .splits import split_indices

    geom = store.attrs["geometry"]
    sino = store.array("sinogram")[chunk.time, chunk.channel, chunk.z_start:chunk.z_stop]
    angles = store.angles
    idx = split_indices(len(angles), cfg.splits.k)[chunk.split]
    kw = dict(center=geom["center"], n_pixels=geom["n_pixels"], use_gpu=cfg.recon.use_gpu)
    if cfg.recon.algorithm == "fbp":
        rec = fbp(sino[:, idx], angles[idx], filter=cfg.recon.filter, **kw)
    else:
        rec = sirt(sino[:, idx], angles[idx], iterations=cfg.recon.iterations, **kw)
    store.write_region("recon", chunk.region, rec)
    return chunk


def finish_reconstruct(store: ScanStore, cfg: RunConfig, seconds: float | None = None) -> None:
    store.mark_stage("reconstruct", k=cfg.splits.k, algorithm=cfg.recon.algorithm,
                     **({"seconds": round(seconds, 3)} if seconds is not None else {}))


def reconstruct(store: ScanStore, cfg: RunConfig, progress: bool = True) -> None:
    """All split reconstructions, sequentially (the flow runs the chunks in parallel)."""
    if store.stage_done("reconstruct"):
        return
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    chunks = prepare_reconstruct(store, cfg)
    for chunk in tqdm(chunks, desc="reconstruct", unit="chunk", disable=not progress):
        reconstruct_chunk(store, cfg, chunk)
    finish_reconstruct(store, cfg, time.perf_counter() - t0)


def load_splits(store: ScanStore) -> np.ndarray:
    """Split reconstructions as ``(split, z, y, x)``, time steps and channels stacked along z."""
    rec = np.asarray(store.array("recon")[:], dtype=np.float32)  # (split, time, channel, z, y, x)
    s, t, c, z, y, x = rec.shape
    return rec.reshape(s, t * c * z, y, x)


# --- train ---------------------------------------------------------------------------------
def train(store: ScanStore, cfg: RunConfig) -> Path:
    """Train the denoiser on the split reconstructions; returns the best checkpoint."""
    from .train import train_n2i

    best = store.model_dir / "best.pt"
    if store.stage_done("train") and best.exists():
        return best
    t0 = time.perf_counter()
    result = train_n2i(load_splits(store), cfg.train, cfg.model, store.model_dir,
                       run_config=cfg.model_dump(mode="json"))
    store.mark_stage("train", seconds=round(time.perf_counter() - t0, 3), checkpoint=str(result.checkpoint),
                     epochs=len(result.history), best_epoch=result.best_epoch, stopped=result.stopped,
                     best_val_loss=_finite_or_none(result.best_val_loss))
    return Path(result.checkpoint)


def _finite_or_none(x: Any) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


# --- denoise -------------------------------------------------------------------------------
def denoise(store: ScanStore, cfg: RunConfig, checkpoint: Path | None = None) -> None:
    """Denoise every slice with the K leave-one-out inputs and write ``denoised``."""
    from .denoise import denoise as run_denoise
    from .train import load_checkpoint

    if store.stage_done("denoise"):
        return
    t0 = time.perf_counter()
    device = _device(cfg.inference.device)
    model, meta = load_checkpoint(checkpoint or store.model_dir / "best.pt", device=device)
    ds = store.open()
    n = int(store.attrs["geometry"]["n_pixels"])
    store.init_array("denoised", {"y": n, "x": n})
    from tqdm.auto import tqdm

    rec = store.array("recon")
    work = [(t, c, zs) for t in range(ds.sizes["time"]) for c in range(ds.sizes["channel"])
            for zs in z_slabs(ds.sizes["z"], store.z_chunk)]
    for t, c, zs in tqdm(work, desc="denoise", unit="slab", disable=not cfg.train.progress):
        splits = np.asarray(rec[:, t, c, zs], dtype=np.float32)
        out = run_denoise(model, splits, strategy=meta["strategy"], normalisation=meta["normalisation"],
                          batch_size=cfg.inference.batch_size, device=device)
        store.write_region("denoised", (t, c, zs), out)
    store.mark_stage("denoise", seconds=round(time.perf_counter() - t0, 3))


def _device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# --- report --------------------------------------------------------------------------------
def report(store: ScanStore, cfg: RunConfig, reference: np.ndarray | None = None) -> dict[str, Any]:
    """Metrics (with and without ground truth), PNG previews and a Markdown summary.

    ``reference`` is an optional clean volume ``(z, y, x)`` (simulations) for PSNR/SSIM.
    """
    from . import metrics
    from .report import write_previews

    splits = load_splits(store)
    fbp = splits.mean(axis=0)  # the mean of the K split FBPs is the full FBP (linearity)
    den = np.asarray(store.array("denoised")[:], dtype=np.float32)
    den = den.reshape(-1, *den.shape[-2:])
    k = splits.shape[0]
    out: dict[str, Any] = {"fbp": {}, "denoised": {}}
    # Unsupervised: noise level of one split from two independent splits.
    noise_var = float(np.mean((splits[0] - splits[1]) ** 2) / 2.0)
    out["split_noise_std"] = float(np.sqrt(noise_var))
    out["fbp"]["noise_std_estimate"] = float(np.sqrt(noise_var / k))
    if reference is not None:
        ref = np.asarray(reference, dtype=np.float32)
        if ref.shape != den.shape:
            raise ValueError(f"reference shape {ref.shape} does not match the denoised volume {den.shape}")
        rng = float(ref.max() - ref.min())
        for name, img in (("fbp", fbp), ("denoised", den)):
            out[name]["psnr"] = float(metrics.psnr(ref, img, data_range=rng))
            out[name]["ssim"] = float(metrics.ssim(ref, img, data_range=rng))
    stages = store.attrs.get("stages", {})
    out["stages"] = {k_: v.get("seconds") for k_, v in stages.items()}
    if "train" in stages:
        out["denoised"]["best_val_loss"] = stages["train"].get("best_val_loss")
    store.report_dir.mkdir(parents=True, exist_ok=True)
    (store.report_dir / "metrics.json").write_text(json.dumps(out, indent=2))
    pngs = write_previews(store.report_dir, fbp, den, n=cfg.output.previews, title=scan_id_for(cfg))
    md = _markdown(store, out, pngs)
    (store.report_dir / "report.md").write_text(md)
    store.mark_stage("report", previews=[p.name for p in pngs])
    return out


def _markdown(store: ScanStore, m: dict[str, Any], pngs: Iterable[Path]) -> str:
    lines = [f"# tomodenoise report: {store.root.name}", "", "| | FBP | denoised |", "|---|---|---|"]
    for key in ("psnr", "ssim"):
        if key in m["fbp"]:
            lines.append(f"| {key.upper()} | {m['fbp'][key]:.2f} | {m['denoised'][key]:.2f} |")
    lines.append(f"| noise std (estimated from splits) | {m['fbp']['noise_std_estimate']:.4g} | |")
    lines += ["", "Previews (FBP | denoised | difference):", ""]
    lines += [f"![{p.stem}]({p.name})" for p in pngs]
    return "\n".join(lines) + "\n"


# --- everything ----------------------------------------------------------------------------
def run(cfg: RunConfig, reference: np.ndarray | None = None, progress: bool = True) -> ScanStore:
    """The whole pipeline in this process, stage after stage (resumes completed stages)."""
    store = ingest(cfg)
    reconstruct(store, cfg, progress=progress)
    ckpt = train(store, cfg)
    denoise(store, cfg, ckpt)
    report(store, cfg, reference=reference)
    return store
