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

import hashlib
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .config import RunConfig
from .io.store import STAGES, ScanStore, z_slabs
from .logs import show_progress

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
    """The output folder name: ``input.scan_id`` or the input's file stem, made file-name safe.

    Only letters, digits, ``.``, ``_`` and ``-`` are kept (others become ``_``), so a scan id
    can never climb out of ``output.root`` or name a hidden folder.
    """
    if cfg.input.scan_id:
        name = cfg.input.scan_id
    else:
        if not cfg.input.path:
            raise ValueError("input.path is not set")
        name = Path(cfg.input.path).name
        for suffix in (".zarr", ".nxs", ".h5", ".hdf5", ".hdf", ".npz", ".npy", ".tif", ".tiff"):
            if name.lower().endswith(suffix):
                name = name[: -len(suffix)]
                break
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return name or "scan"


# --- stage keys ----------------------------------------------------------------------------
# A stage is skipped only when it is complete in the store AND its key matches: the key hashes
# the identity of the input and the parts of the configuration that change the stage's output,
# chained to the key of the stage before it. A changed input or setting reruns that stage and
# everything after it; a changed progress bar or device does not.
_KEY_FIELDS: dict[str, dict[str, Any]] = {
    "ingest": {"input": {"exclude": {"scan_id"}}, "preprocess": {}, "recon": {"include": {"n_pixels", "z_chunk"}}},
    "reconstruct": {"splits": {}, "recon": {"exclude": {"use_gpu", "z_chunk"}}},
    "train": {"model": {}, "train": {"exclude": {"progress", "device", "resume"}}},
    "denoise": {},
}


def input_identity(path: str | os.PathLike) -> dict[str, Any]:
    """What identifies the raw input: resolved path, and size and mtime of each file in it."""
    p = Path(path).expanduser().resolve()
    if not p.exists():
        return {"path": str(p), "missing": True}
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(p) if f != p else f.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return {"path": str(p), "files": len(files), "digest": h.hexdigest()[:16]}


def stage_keys(cfg: RunConfig, identity: dict[str, Any] | None = None) -> dict[str, str]:
    """The key of each stage for this configuration (see ``_KEY_FIELDS``)."""
    identity = identity if identity is not None else input_identity(cfg.input.path or ".")
    keys: dict[str, str] = {}
    prev: Any = {k: v for k, v in identity.items() if k != "path"} | {"source": identity.get("path")}
    for stage, fields in _KEY_FIELDS.items():
        parts = {"prev": prev}
        for section, sel in fields.items():
            parts[section] = getattr(cfg, section).model_dump(mode="json", **sel)
        prev = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
        keys[stage] = prev
    return keys


def stage_current(store: ScanStore, stage: str, key: str) -> bool:
    """True when ``stage`` is complete in the store and was computed with ``key``."""
    return store.exists() and store.stage_done(stage) and store.stage_info(stage).get("key") == key


def _invalidate_from(store: ScanStore, stage: str) -> None:
    """Forget ``stage`` and every stage after it (their outputs are stale)."""
    later = STAGES[STAGES.index(stage):]
    if store.exists():
        store.clear_stage(*later)
    if "train" in later and store.model_dir.exists():
        shutil.rmtree(store.model_dir)
    if "report" in later and store.report_dir.exists():
        for p in store.report_dir.iterdir():  # the run log is being written: keep it
            if p.name != "run.log":
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    if "ingest" in later and (store.root / "progress").exists():
        shutil.rmtree(store.root / "progress")


def store_for(cfg: RunConfig) -> ScanStore:
    root = Path(cfg.output.root).expanduser().resolve()
    return ScanStore(root / scan_id_for(cfg))


# --- ingest --------------------------------------------------------------------------------
def ingest(cfg: RunConfig) -> ScanStore:
    """Read the raw scan, preprocess it and write the sinogram store.

    Skipped when the store already holds this input (same files, sizes and mtimes) ingested
    with the same settings. Input and configuration errors are raised before anything is
    written. A store that holds a *different* source under the same scan id is refused
    unless ``output.overwrite`` is set (two ``scan.h5`` in different folders would otherwise
    overwrite each other's results).
    """
    from .io import read_scan
    from .preprocess import preprocess

    if not cfg.input.path:
        raise ValueError("input.path is not set: give the scan to denoise")
    store = store_for(cfg)
    identity = input_identity(cfg.input.path)
    key = stage_keys(cfg, identity)["ingest"]
    if stage_current(store, "ingest", key):
        log.info("ingest already complete in %s", store.zarr_path)
        return store
    if store.exists():
        previous = store.attrs.get("source_identity", {}).get("path")
        if previous and previous != identity["path"] and not cfg.output.overwrite:
            raise FileExistsError(
                f"{store.root} already holds the results of {previous}, not {identity['path']}; "
                "set input.scan_id to a different name or output.overwrite=true to replace it")
    t0 = time.perf_counter()
    raw = read_scan(
        cfg.input.path,
        format=cfg.input.format,
        angles_file=cfg.input.angles_file,
        angles_unit=cfg.input.angles_unit,
        slices=cfg.input.slices,
        flats=cfg.input.flats,
        darks=cfg.input.darks,
    )
    n_angles = int(np.asarray(raw.angles).size)
    if cfg.splits.k > n_angles:
        raise ValueError(f"splits.k = {cfg.splits.k} is more than the {n_angles} projection angles of {cfg.input.path}")
    pre = preprocess(raw, center=cfg.preprocess.center, log_min=cfg.preprocess.log_min,
                     center_search=cfg.preprocess.center_search,
                     max_clamped_fraction=cfg.preprocess.max_clamped_fraction)
    sino = np.asarray(pre.sinogram, dtype=np.float32)
    n_det = sino.shape[-1]
    z0 = cfg.input.slices[0] if cfg.input.slices else 0
    geometry = {
        "center": float(pre.center),
        "n_det": int(n_det),
        "n_pixels": int(cfg.recon.n_pixels or n_det),
        "beam": "parallel",
    }
    _invalidate_from(store, "ingest")
    store = ScanStore.create(
        store.root, sino[None, None], pre.angles,
        z=np.arange(z0, z0 + sino.shape[0]), z_chunk=cfg.recon.z_chunk,
        attrs={
            "scan_id": scan_id_for(cfg),
            "source": str(raw.source),
            "source_identity": identity,
            "config": cfg.model_dump(mode="json"),
            "geometry": geometry,
            "reader": dict(raw.attrs),  # format, rows, flats_source/darks_source, counts
            "preprocess": dict(pre.info, n_clamped=int(pre.n_clamped)),  # incl. projection_order, warnings
        },
    )
    store.mark_stage("ingest", key=key, seconds=round(time.perf_counter() - t0, 3), center=float(pre.center),
                     n_clamped=int(pre.n_clamped))
    return store


def _key(store: ScanStore, cfg: RunConfig, stage: str) -> str:
    """The key of ``stage`` for ``cfg`` on the input this store was ingested from."""
    return stage_keys(cfg, store.attrs.get("source_identity") or {})[stage]


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


def reconstruct_current(store: ScanStore, cfg: RunConfig) -> bool:
    """True when the split reconstructions in the store were made with these settings."""
    return stage_current(store, "reconstruct", _key(store, cfg, "reconstruct"))


# Chunk completion: one marker file per written chunk under progress/reconstruct-<key>/,
# created (atomically) only after the chunk's bytes are in the store. Markers of a key
# survive a killed run, so running again computes only the chunks without one; a new key
# (other input or settings) starts from no markers.
def _progress_dir(store: ScanStore, key: str) -> Path:
    return store.root / "progress" / f"reconstruct-{key}"


def _marker(chunk: Chunk) -> str:
    return f"s{chunk.split}-t{chunk.time}-c{chunk.channel}-z{chunk.z_start}.done"


def prepare_reconstruct(store: ScanStore, cfg: RunConfig) -> list[Chunk]:
    """Create ``recon`` and list the chunks still to compute.

    Reconstructions made with other settings are forgotten (with everything downstream);
    chunks already written with these settings (an interrupted run) are kept.
    """
    key = _key(store, cfg, "reconstruct")
    pdir = _progress_dir(store, key)
    n = int(store.attrs["geometry"]["n_pixels"])
    if not pdir.is_dir():
        _invalidate_from(store, "reconstruct")
        if pdir.parent.is_dir():
            for old in pdir.parent.glob("reconstruct-*"):
                shutil.rmtree(old, ignore_errors=True)
        pdir.mkdir(parents=True)
    store.init_array("recon", {"split": cfg.splits.k, "y": n, "x": n})
    done = {p.name for p in pdir.glob("*.done")}
    todo = [c for c in recon_chunks(store, cfg) if _marker(c) not in done]
    if len(done):
        log.info("reconstruction: %d chunks already written, %d to compute", len(done), len(todo))
    return todo


def reconstruct_chunk(store: ScanStore, cfg: RunConfig, chunk: Chunk) -> Chunk:
    """Reconstruct one split of one z-slab, write it as one whole Zarr chunk, mark it done."""
    from .recon import fbp, gpu_available, sirt
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
    pdir = _progress_dir(store, _key(store, cfg, "reconstruct"))
    tmp = pdir / f".{_marker(chunk)}.{os.getpid()}.tmp"
    device = "cuda" if cfg.recon.use_gpu != "no" and gpu_available() else "cpu"
    tmp.write_text(json.dumps({"z": [chunk.z_start, chunk.z_stop], "pid": os.getpid(), "device": device}))
    os.replace(tmp, pdir / _marker(chunk))
    return chunk


def finish_reconstruct(store: ScanStore, cfg: RunConfig, seconds: float | None = None) -> None:
    """Mark the stage complete, after checking that every chunk has been written."""
    key = _key(store, cfg, "reconstruct")
    done = {p.name for p in _progress_dir(store, key).glob("*.done")}
    missing = [c for c in recon_chunks(store, cfg) if _marker(c) not in done]
    if missing:
        raise RuntimeError(f"reconstruction incomplete: {len(missing)} chunks not written, e.g. {missing[0]}")
    devices = sorted({json.loads(p.read_text()).get("device", "?") for p in _progress_dir(store, key).glob("*.done")})
    if len(devices) > 1:  # a run resumed on other hardware: CPU and GPU FBPs differ slightly
        log.warning("reconstruction chunks were computed on %s; rerun with a fresh store for uniform results",
                    " and ".join(devices))
    store.mark_stage("reconstruct", key=key, k=cfg.splits.k, algorithm=cfg.recon.algorithm, chunks=len(done),
                     devices=devices,
                     **({"seconds": round(seconds, 3)} if seconds is not None else {}))


def reconstruct(store: ScanStore, cfg: RunConfig, progress: bool = True) -> None:
    """All split reconstructions, sequentially (the flow runs the chunks in parallel)."""
    if reconstruct_current(store, cfg):
        return
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    chunks = prepare_reconstruct(store, cfg)
    for chunk in tqdm(chunks, desc="reconstruct", unit="chunk", disable=not (progress and show_progress())):
        reconstruct_chunk(store, cfg, chunk)
    finish_reconstruct(store, cfg, time.perf_counter() - t0)


def load_splits(store: ScanStore) -> np.ndarray:
    """Split reconstructions as ``(split, z, y, x)``, time steps and channels stacked along z."""
    rec = np.asarray(store.array("recon")[:], dtype=np.float32)  # (split, time, channel, z, y, x)
    s, t, c, z, y, x = rec.shape
    return rec.reshape(s, t * c * z, y, x)


# --- train ---------------------------------------------------------------------------------
def train(store: ScanStore, cfg: RunConfig, on_epoch: Any = None) -> Path:
    """Train the denoiser on the split reconstructions; returns the best checkpoint.

    Skipped when a model trained with these settings on these reconstructions exists. An
    interrupted training with the same settings resumes from ``model/last.pt``.
    """
    from .train import train_n2i

    key = _key(store, cfg, "train")
    best = store.model_dir / "best.pt"
    if stage_current(store, "train", key) and best.exists():
        return best
    tcfg = cfg.train if show_progress() else cfg.train.model_copy(update={"progress": False})
    last = store.model_dir / "last.pt"
    started = store.attrs.get("train_started", {})
    if started.get("key") == key and last.exists() and tcfg.resume is None:
        log.info("resuming the interrupted training from %s", last)
        tcfg = tcfg.model_copy(update={"resume": str(last)})
    else:
        _invalidate_from(store, "train")
        store.update_attrs(train_started={"key": key})
    t0 = time.perf_counter()
    result = train_n2i(load_splits(store), tcfg, cfg.model, store.model_dir,
                       run_config=cfg.model_dump(mode="json"), on_epoch=on_epoch)
    store.mark_stage("train", key=key, seconds=round(time.perf_counter() - t0, 3), checkpoint=str(result.checkpoint),
                     epochs=len(result.history), best_epoch=result.best_epoch, stopped=result.stopped,
                     best_val_loss=_finite_or_none(result.best_val_loss))
    return Path(result.checkpoint)


def _finite_or_none(x: Any) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


# --- denoise -------------------------------------------------------------------------------
def denoise(store: ScanStore, cfg: RunConfig, checkpoint: Path | None = None, progress: bool | None = None) -> None:
    """Denoise every slice with the K leave-one-out inputs and write ``denoised``."""
    from .denoise import denoise as run_denoise
    from .train import checkpoint_neighbours, load_checkpoint

    progress = (cfg.train.progress if progress is None else progress) and show_progress()
    key = _key(store, cfg, "denoise")
    if stage_current(store, "denoise", key):
        return
    store.clear_stage("denoise", "report")
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
    nb = checkpoint_neighbours(meta)  # neighbour slices: a halo per slab
    n_z = ds.sizes["z"]
    for t, c, zs in tqdm(work, desc="denoise", unit="slab", disable=not progress):
        lo, hi = max(zs.start - nb, 0), min(zs.stop + nb, n_z)
        splits = np.asarray(rec[:, t, c, lo:hi], dtype=np.float32)
        out = run_denoise(model, splits, strategy=meta["strategy"], normalisation=meta["normalisation"],
                          batch_size=cfg.inference.batch_size, device=device, neighbours=nb,
                          slices=slice(zs.start - lo, zs.stop - lo))
        store.write_region("denoised", (t, c, zs), out)
    store.mark_stage("denoise", key=key, seconds=round(time.perf_counter() - t0, 3))


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
    """The whole pipeline in this process, stage after stage (resumes completed stages).

    Holds the store's lock (:mod:`tomodenoise.lock`) like the flow, and logs each stage's
    summary line (:mod:`tomodenoise.summary`).
    """
    from .lock import store_lock
    from .summary import log_stage

    with store_lock(store_for(cfg).root):
        t0 = time.time()
        store = ingest(cfg)
        log_stage(store, "ingest", t0)
        t0 = time.time()
        reconstruct(store, cfg, progress=progress)
        log_stage(store, "reconstruct", t0)
        t0 = time.time()
        ckpt = train(store, cfg)
        log_stage(store, "train", t0)
        t0 = time.time()
        denoise(store, cfg, ckpt)
        log_stage(store, "denoise", t0)
        report(store, cfg, reference=reference)
        log_stage(store, "report")
    return store
