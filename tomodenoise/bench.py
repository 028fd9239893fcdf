"""The foam benchmark: the original Noise2Inverse experiment, reproduced on N slices.

``tomodenoise bench foam --slices N --out DIR`` runs :func:`run_foam_benchmark`:

1. Simulate (or load from the cache in ``DIR``) the clean and noisy sinograms of ``N``
   detector rows centred on the middle of the 512-row detector: parallel beam, 1024 angles
   over ``[0, pi)``, 768 columns of size ``2 / 512``, 2x2 supersampling, exact analytic line
   integrals through the foam phantom (``../shared/data/foam_n2i/phantom.h5`` when present,
   else a foam generated from the seed), Poisson noise with ``I0 = 10`` photons and
   absorption factor 2.76 (:mod:`tomodenoise.simulate.noise`).
2. Reconstruct (FBP, Ram-Lak, 512 x 512): the clean full-angle FBP (the ground truth), the
   noisy full-angle FBP, and the K = 4 interlaced split FBPs (cached as well).
3. Score every method against the clean FBP with ``data_range = max - min`` of the clean
   FBP over the evaluated slices: ``fbp``, ``split``, ``gaussian`` and ``tv`` (both tuned
   by an *oracle* grid search on the ground truth, as in the reference), ``n2i_msd`` and
   ``n2i_unet`` (Noise2Inverse X:1, trained for ``minutes`` each on the noisy splits only;
   the checkpoint is selected by the N2I validation loss on held-out slices), optionally
   ``bm3d``.
4. Write ``DIR/metrics.json`` (every method + a ``meta`` entry), ``DIR/preview.png`` and
   ``DIR/results.md``, and print the table.

Every size is a parameter (:class:`FoamGeometry`), so the tests run the same machinery on
a 32 x 32 toy in seconds.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ALL_METHODS",
    "DEFAULT_METHODS",
    "PUBLISHED",
    "FoamGeometry",
    "default_phantom_path",
    "format_table",
    "run_foam_benchmark",
]

#: Methods run by default, in table order.
DEFAULT_METHODS: tuple[str, ...] = ("fbp", "split", "gaussian", "tv", "n2i_msd", "n2i_unet")
#: Every method the benchmark knows (``bm3d`` is slow on a CPU: opt-in).
ALL_METHODS: tuple[str, ...] = DEFAULT_METHODS + ("bm3d",)
N2I_METHODS: dict[str, str] = {"n2i_msd": "msd", "n2i_unet": "unet"}

#: Published figures of the reference experiment (Hendriksen et al. 2020, foam, I0 = 10,
#: K = 4, X:1, MS-D 100 x 1): PSNR [dB] / SSIM over the whole volume for MS-D; PSNR on
#: slice 256 for the baselines (see ../shared/data/README.md).
PUBLISHED: dict[str, dict[str, Any]] = {
    "n2i_msd": {"psnr": 21.33, "ssim": 0.77, "where": "whole volume (512 slices), MS-D 100x1"},
    "fbp": {"psnr": 3.07, "where": "slice 256"},
    "split": {"psnr": -3.02, "where": "slice 256"},
    "gaussian": {"psnr": 16.7, "where": "slice 256, best-tuned"},
    "tv": {"psnr": 16.6, "where": "slice 256, best-tuned"},
}

#: Required margin of the best N2I network over the best of Gaussian and TV [dB].
TARGET_MARGIN_DB = 4.0

CACHE_VERSION = 1


@dataclass(frozen=True)
class FoamGeometry:
    """Scan and reconstruction geometry (defaults: the reference benchmark).

    The detector pixel size is ``2 / n_pixels`` phantom units, so the ``n_pixels`` x
    ``n_pixels`` reconstruction (voxel = detector pixel) exactly covers the unit
    cylinder; ``n_rows`` detector rows cover ``z`` in ``[-n_rows/2, n_rows/2] * pixel``.
    """

    n_angles: int = 1024
    n_det: int = 768
    n_rows: int = 512
    n_pixels: int = 512
    supersampling: int = 2

    @property
    def pixel_size(self) -> float:
        return 2.0 / self.n_pixels

    def angles(self) -> np.ndarray:
        return np.linspace(0.0, np.pi, self.n_angles, endpoint=False)

    def rows(self, n_slices: int) -> np.ndarray:
        """``n_slices`` consecutive detector rows centred on the middle row ``n_rows // 2``."""
        if not 1 <= n_slices <= self.n_rows:
            raise ValueError(f"n_slices must be in 1..{self.n_rows}, got {n_slices}")
        start = self.n_rows // 2 - n_slices // 2
        return np.arange(start, start + n_slices)

    def z_positions(self, rows: np.ndarray) -> np.ndarray:
        return (np.asarray(rows, dtype=np.float64) - (self.n_rows - 1) / 2.0) * self.pixel_size


@dataclass
class NetworkSetup:
    """How one N2I network is trained in the benchmark (recorded in metrics.json)."""

    model: str
    params: dict[str, Any]
    patch_size: int | None = 128
    batch_size: int = 8
    patches_per_slice: int = 8
    lr: float = 1e-3
    #: Step learning-rate schedule: after this fraction of the time budget, training resumes
    #: from ``last.pt`` with ``lr * lr_drop_factor`` (None = constant learning rate). The
    #: targets are very noisy (one split), so a lower final rate averages their noise out.
    lr_drop_at: float | None = 0.7
    lr_drop_factor: float = 0.1
    extra: dict[str, Any] = field(default_factory=dict)


def default_network_setups() -> dict[str, NetworkSetup]:
    """Network sizes chosen for a 2-core CPU and ~10 minutes of training each.

    MS-D: depth 30 x width 1 (the published network is 100 x 1; on two CPU cores one
    training step of depth 100 costs ~4x one of depth 30, so in 10 minutes the shallow
    network sees ~4x more data and learns more). U-Net: the registry default
    (depth 4, 32 base channels, batch norm).
    """
    return {
        "n2i_msd": NetworkSetup("msd", {"depth": 30, "width": 1}, patch_size=128, batch_size=4,
                                patches_per_slice=8, lr=2e-3),
        "n2i_unet": NetworkSetup("unet", {}, patch_size=128, batch_size=8, patches_per_slice=8, lr=1e-3),
    }


# --------------------------------------------------------------------------- helpers


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def default_phantom_path() -> Path:
    """``<repo>/../shared/data/foam_n2i/phantom.h5`` (the reference foam)."""
    return (_repo_root() / ".." / "shared" / "data" / "foam_n2i" / "phantom.h5").resolve()


def _log(msg: str) -> None:
    print(msg, flush=True)


def _file_tag(path: Path) -> str:
    st = path.stat()
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"{path.name}:{st.st_size}:{h.hexdigest()[:12]}"


def _resolve_phantom(phantom: str | os.PathLike | None, seed: int, n_spheres: int) -> tuple[np.ndarray, str, str]:
    """The spheres, a human-readable source, and a cache tag.

    ``phantom``: a path to a ``phantom.h5``; ``None`` = the shared reference foam when
    present, else a generated foam; ``"generate"`` = always a foam generated from ``seed``.
    """
    from .simulate.foam import generate_foam, load_spheres

    if phantom is None:
        default = default_phantom_path()
        phantom = str(default) if default.is_file() else "generate"
    if str(phantom) == "generate":
        spheres = generate_foam(seed, n_spheres=n_spheres)
        source = f"generated foam (generate_foam(seed={seed}, n_spheres={n_spheres}), {len(spheres)} spheres)"
        return spheres, source, f"generated:{seed}:{n_spheres}"
    path = Path(phantom).expanduser().resolve()
    spheres = load_spheres(path)
    return spheres, f"{path} ({len(spheres)} spheres)", _file_tag(path)


def _cache_key(parts: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _save_npz(path: Path, **arrays: Any) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _load_npz(path: Path, key: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            return {k: z[k] for k in z.files}
    except (OSError, KeyError, ValueError):  # a damaged cache is recomputed
        return None


def _machine() -> dict[str, Any]:
    import torch

    try:
        from .recon import gpu_available

        astra_gpu = bool(gpu_available())
    except (ImportError, RuntimeError):  # pragma: no cover
        astra_gpu = False
    gpu = torch.cuda.is_available()
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if gpu else None,
        "astra_gpu": astra_gpu,
    }


def _machine_line(m: dict[str, Any]) -> str:
    gpu = m["gpu"] or "no GPU"
    return (f"{m['platform']}, {m['cpu_count']} CPU cores ({m['processor']}), torch {m['torch']} "
            f"with {m['torch_threads']} threads, {gpu}")


# --------------------------------------------------------------------------- scoring


class _Scorer:
    """PSNR/SSIM against the clean FBP with one fixed data range (tomodenoise.metrics)."""

    def __init__(self, clean: np.ndarray, centre: int) -> None:
        from . import metrics

        self.metrics = metrics
        self.clean = np.asarray(clean, dtype=np.float32)
        self.data_range = float(self.clean.max() - self.clean.min())
        self.centre = centre

    def psnr(self, img: np.ndarray) -> float:
        return float(self.metrics.psnr(self.clean, np.asarray(img, np.float32), data_range=self.data_range))

    def score(self, img: np.ndarray, seconds: float, **extra: Any) -> dict[str, Any]:
        img = np.asarray(img, dtype=np.float32)
        c = self.centre
        out = {
            "psnr": self.psnr(img),
            "ssim": float(self.metrics.ssim(self.clean, img, data_range=self.data_range)),
            "seconds": float(seconds),
            "psnr_centre_slice": float(self.metrics.psnr(self.clean[c], img[c], data_range=self.data_range)),
        }
        out.update(extra)
        return out


def _oracle_search(evaluate: Callable[[float], float], grid: Sequence[float], refine: int = 4,
                   log: bool = True) -> tuple[float, float, list[tuple[float, float]]]:
    """Maximise ``evaluate`` over ``grid``, then refine between the best point's neighbours.

    A maximum at an edge of the grid extends the grid outwards (up to 4 times).
    Returns ``(best_param, best_value, all (param, value) pairs)``.
    """
    tried: dict[float, float] = {}

    def ev(p: float) -> float:
        p = float(p)
        if p not in tried:
            tried[p] = float(evaluate(p))
        return tried[p]

    grid = sorted(float(g) for g in grid)
    for g in grid:
        ev(g)
    for _ in range(4):  # extend at the edges
        best = max(tried, key=tried.get)
        pts = sorted(tried)
        if best == pts[-1]:
            ratio = pts[-1] / pts[-2] if log else None
            ev(pts[-1] * ratio if log else 2 * pts[-1] - pts[-2])
        elif best == pts[0]:
            ratio = pts[1] / pts[0] if log else None
            ev(pts[0] / ratio if log else max(1e-6, 2 * pts[0] - pts[1]))
        else:
            break
    best = max(tried, key=tried.get)
    pts = sorted(tried)
    i = pts.index(best)
    lo, hi = pts[max(i - 1, 0)], pts[min(i + 1, len(pts) - 1)]
    if refine > 0 and hi > lo:
        cand = np.geomspace(lo, hi, refine + 2)[1:-1] if log and lo > 0 else np.linspace(lo, hi, refine + 2)[1:-1]
        for c in cand:
            ev(c)
    best = max(tried, key=tried.get)
    return best, tried[best], sorted(tried.items())


def _gaussian(noisy: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return np.stack([gaussian_filter(s, sigma=sigma, mode="reflect") for s in noisy]).astype(np.float32)


def _tv(noisy: np.ndarray, weight: float) -> np.ndarray:
    from skimage.restoration import denoise_tv_chambolle

    return np.stack([denoise_tv_chambolle(s, weight=weight) for s in noisy]).astype(np.float32)


def _bm3d(noisy: np.ndarray) -> tuple[np.ndarray, float]:
    import bm3d
    from skimage.restoration import estimate_sigma

    sigma = float(np.mean([estimate_sigma(s) for s in noisy]))
    return np.stack([bm3d.bm3d(s, sigma_psd=sigma) for s in noisy]).astype(np.float32), sigma


# --------------------------------------------------------------------------- simulation


def _simulate(out: Path, geom: FoamGeometry, rows: np.ndarray, spheres: np.ndarray, phantom_tag: str,
              seed: int, i0: float, absorption: float) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Clean and noisy sinograms ``(z, angle, det)`` in pixel units, cached in ``out``."""
    from .simulate.foam import project_foam
    from .simulate.noise import poisson_noise

    parts = {"v": CACHE_VERSION, "geometry": asdict(geom), "rows": rows.tolist(), "phantom": phantom_tag,
             "seed": seed, "i0": i0, "absorption": absorption}
    key = _cache_key(parts)
    path = out / f"sinograms_n{len(rows)}_s{seed}_{key}.npz"
    cached = _load_npz(path, key)
    if cached is not None:
        _log(f"sinograms: cached {path.name}")
        return cached["clean"], cached["noisy"], {"cache": str(path), "cached": True,
                                                  "seconds": float(cached["seconds"])}
    angles = geom.angles()
    t0 = time.perf_counter()
    clean = project_foam(spheres, angles, geom.n_det, geom.z_positions(rows), geom.pixel_size,
                         supersampling=geom.supersampling)
    rng = np.random.default_rng(seed)
    noisy = poisson_noise(clean, i0, absorption, rng, pixel_size=geom.pixel_size)
    seconds = time.perf_counter() - t0
    _save_npz(path, key=np.array(key), clean=clean, noisy=noisy, seconds=np.array(seconds),
              params=np.array(json.dumps(parts)))
    zero = float(np.mean(noisy >= -np.log(1.0 / i0) / (absorption * geom.pixel_size) - 1e-3))
    _log(f"sinograms: simulated {clean.shape} in {seconds:.1f} s ({100 * zero:.1f} % zero counts), cached {path.name}")
    return clean, noisy, {"cache": str(path), "cached": False, "seconds": seconds, "zero_count_fraction": zero}


def _reconstruct(out: Path, geom: FoamGeometry, sino_key: str, clean_sino: np.ndarray, noisy_sino: np.ndarray,
                 k: int) -> tuple[dict[str, np.ndarray], dict[str, float], bool]:
    """Clean and noisy full-angle FBPs and the K split FBPs, cached in ``out``."""
    from .recon import fbp, reconstruct_splits

    key = _cache_key({"v": CACHE_VERSION, "sino": sino_key, "k": k, "n_pixels": geom.n_pixels, "filter": "ram-lak"})
    path = out / f"recon_{key}.npz"
    cached = _load_npz(path, key)
    if cached is not None:
        _log(f"reconstructions: cached {path.name}")
        times = json.loads(str(cached["times"]))
        return {n: cached[n] for n in ("clean", "noisy", "splits")}, times, True
    angles = geom.angles()
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    clean = fbp(clean_sino, angles, n_pixels=geom.n_pixels, filter="ram-lak")
    times["clean"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    noisy = fbp(noisy_sino, angles, n_pixels=geom.n_pixels, filter="ram-lak")
    times["fbp"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    splits = reconstruct_splits(noisy_sino, angles, k, n_pixels=geom.n_pixels, filter="ram-lak")
    times["splits"] = time.perf_counter() - t0
    times["split"] = times["splits"] / k
    _save_npz(path, key=np.array(key), clean=clean, noisy=noisy, splits=splits, times=np.array(json.dumps(times)))
    _log(f"reconstructions: FBP clean {times['clean']:.1f} s, noisy {times['fbp']:.1f} s, "
         f"{k} splits {times['splits']:.1f} s; cached {path.name}")
    return {"clean": clean, "noisy": noisy, "splits": splits}, times, False


# --------------------------------------------------------------------------- N2I


def _run_n2i(name: str, setup: NetworkSetup, splits: np.ndarray, minutes: float, out: Path, seed: int,
             progress: bool, device: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Train one network with Noise2Inverse (X:1) for ``minutes``; denoise all slices."""
    from .config import ModelConfig, TrainConfig
    from .denoise import denoise
    from .train import load_checkpoint, resolve_device, train_n2i

    dev = resolve_device(device)

    n_slices = splits.shape[1]
    # Hold out one slice in ~8 (at least one when there are >= 2) for the N2I validation
    # loss, which alone picks the checkpoint: no ground truth enters training.
    n_val = max(1, round(n_slices / 8)) if n_slices >= 2 else 0
    val_fraction = n_val / n_slices if n_val else 0.0
    tcfg = TrainConfig(
        strategy="X:1",
        epochs=100_000,  # the time budget stops training
        batch_size=setup.batch_size,
        lr=setup.lr,
        patch_size=setup.patch_size,
        patches_per_slice=setup.patches_per_slice,
        val_fraction=val_fraction,
        early_stopping=0,
        max_minutes=minutes,
        seed=seed,
        device=device,
        progress=progress,
        augment=True,  # random 90-degree rotations / flips: more variety from few slices
        **setup.extra,
    )
    mcfg = ModelConfig(name=setup.model, params=dict(setup.params))
    run_dir = out / "models" / name
    run_dir.mkdir(parents=True, exist_ok=True)
    _log(f"{name}: training {setup.model} {setup.params} for {minutes:g} min "
         f"(patches {setup.patch_size}, batch {setup.batch_size}, lr {setup.lr:g})")
    t0 = time.perf_counter()
    for stale in ("best.pt", "last.pt"):  # a new run, not a resume of an older one
        (run_dir / stale).unlink(missing_ok=True)
    run_config = {"benchmark": "foam", "method": name}
    phases = [(minutes, setup.lr)]
    if setup.lr_drop_at is not None and 0 < setup.lr_drop_at < 1:
        phases = [(minutes * setup.lr_drop_at, setup.lr),
                  (minutes * (1 - setup.lr_drop_at), setup.lr * setup.lr_drop_factor)]
    result = None
    for i, (mins, lr) in enumerate(phases):
        upd: dict[str, Any] = {"max_minutes": mins, "lr": lr}
        if i > 0:
            upd["resume"] = str(result.last_checkpoint)
            _log(f"{name}: learning rate -> {lr:g} for the last {mins:.1f} min")
        result = train_n2i(splits, tcfg.model_copy(update=upd), mcfg, run_dir, run_config=run_config)
    t_train = time.perf_counter() - t0
    t1 = time.perf_counter()
    model, meta = load_checkpoint(result.checkpoint, device=dev)
    model.eval()
    den = denoise(model, splits, strategy="X:1", normalisation=meta.get("normalisation", result.normalisation),
                  batch_size=4, device=dev, progress=progress)
    t_inf = time.perf_counter() - t1
    info = {
        "model": setup.model,
        "params": setup.params,
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "patch_size": setup.patch_size,
        "batch_size": setup.batch_size,
        "patches_per_slice": setup.patches_per_slice,
        "lr": setup.lr,
        "lr_schedule": [{"minutes": m, "lr": l} for m, l in phases],
        "val_fraction": val_fraction,
        "val_slices": list(result.val_slices),
        "stopped": result.stopped,
        "augment": True,
        "max_minutes": minutes,
        "device": str(dev),
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "train_seconds": t_train,
        "inference_seconds": t_inf,
        "checkpoint": str(result.checkpoint),
        "history": result.history,
    }
    return np.asarray(den, dtype=np.float32), info


# --------------------------------------------------------------------------- output


def format_table(metrics: dict[str, Any]) -> str:
    """Markdown table: method | PSNR | SSIM | seconds | published reference."""
    lines = ["| method | PSNR [dB] | SSIM | PSNR centre slice [dB] | seconds | published (PSNR / SSIM) |",
             "|---|---:|---:|---:|---:|---|"]
    for name in ALL_METHODS:
        m = metrics.get(name)
        if not m:
            continue
        pub = PUBLISHED.get(name)
        if pub:
            ref = f"{pub['psnr']:.2f} dB" + (f" / {pub['ssim']:.2f}" if "ssim" in pub else "") + f" ({pub['where']})"
        else:
            ref = "-"
        note = ""
        if "sigma" in m:
            note = f" (sigma {m['sigma']:.2f})"
        elif "weight" in m:
            note = f" (weight {m['weight']:.3g})"
        lines.append(f"| {name}{note} | {m['psnr']:.2f} | {m['ssim']:.3f} | {m['psnr_centre_slice']:.2f} | "
                     f"{m['seconds']:.0f} | {ref} |")
    return "\n".join(lines)


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    n2i = {k: metrics[k]["psnr"] for k in N2I_METHODS if k in metrics}
    base = {k: metrics[k]["psnr"] for k in ("gaussian", "tv") if k in metrics}
    if not n2i or not base:
        return {"best_n2i": None, "best_classical": None, "margin_db": None, "meets_target": None,
                "target_db": TARGET_MARGIN_DB}
    bn, bb = max(n2i, key=n2i.get), max(base, key=base.get)
    margin = n2i[bn] - base[bb]
    return {"best_n2i": bn, "best_classical": bb, "margin_db": margin, "meets_target": bool(margin >= TARGET_MARGIN_DB),
            "target_db": TARGET_MARGIN_DB}


def _write_preview(path: Path, images: dict[str, np.ndarray], clean: np.ndarray, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["clean"] + [n for n in ("fbp", "gaussian", "tv", "n2i_msd", "n2i_unet", "bm3d") if n in images]
    vmin, vmax = float(clean.min()), float(clean.max())
    ncol = 3 if len(names) > 4 else len(names)
    nrow = math.ceil(len(names) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 4.5 * nrow), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, n in zip(axes.ravel(), names):
        ax.imshow(clean if n == "clean" else images[n], cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(n if n == "clean" else f"{n}", fontsize=11)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --------------------------------------------------------------------------- main entry


def run_foam_benchmark(
    out: Path | str,
    n_slices: int = 8,
    phantom: str | None = None,
    minutes: float = 10.0,
    methods: Sequence[str] | None = None,
    *,
    seed: int = 0,
    i0: float = 10.0,
    absorption: float = 2.76,
    k: int = 4,
    n_angles: int = 1024,
    n_det: int = 768,
    n_rows: int = 512,
    n_pixels: int = 512,
    supersampling: int = 2,
    n_spheres: int = 1000,
    networks: dict[str, NetworkSetup] | None = None,
    device: str = "auto",
    progress: bool = True,
    command: str | None = None,
) -> dict[str, Any]:
    """Run the foam benchmark and write ``out/metrics.json``, ``out/preview.png``, ``out/results.md``.

    Parameters
    ----------
    out : path
        Output folder (also holds the sinogram/FBP caches and the checkpoints).
    n_slices : int
        Detector rows (= reconstructed slices) centred on the middle row.
    phantom : str, optional
        ``phantom.h5`` path; default the shared reference foam when present, else a
        generated foam; ``"generate"`` forces a foam generated from ``seed``.
    minutes : float
        Training time per network.
    methods : sequence of str, optional
        Subset of :data:`ALL_METHODS`; default :data:`DEFAULT_METHODS`.
    seed, i0, absorption, k
        Noise seed (also the training seed and the seed of a generated foam), incident
        photons, absorption factor, number of splits.
    n_angles, n_det, n_rows, n_pixels, supersampling
        Geometry (:class:`FoamGeometry`); defaults are the reference benchmark's.
    n_spheres : int
        Spheres of a generated foam.
    networks : dict, optional
        ``{"n2i_msd": NetworkSetup, "n2i_unet": NetworkSetup}`` overrides of
        :func:`default_network_setups`.
    device : str
        Torch device for training and inference (``"auto"``: CUDA when available, else CPU).

    Returns
    -------
    dict
        The content of ``metrics.json``.
    """
    t_start = time.perf_counter()
    out = Path(out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    methods = list(DEFAULT_METHODS if methods is None or len(methods) == 0 else methods)
    unknown = sorted(set(methods) - set(ALL_METHODS))
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; known: {', '.join(ALL_METHODS)}")
    methods = [m for m in ALL_METHODS if m in methods]
    geom = FoamGeometry(n_angles=n_angles, n_det=n_det, n_rows=n_rows, n_pixels=n_pixels, supersampling=supersampling)
    rows = geom.rows(n_slices)
    centre_row = geom.n_rows // 2
    centre = int(np.nonzero(rows == centre_row)[0][0])
    setups = default_network_setups()
    setups.update(networks or {})
    if command is None:
        command = (f"tomodenoise bench foam --slices {n_slices} --out {out} --minutes {minutes:g}"
                   + (f" --phantom {phantom}" if phantom else "")
                   + (f" --methods {' '.join(methods)}" if list(methods) != list(DEFAULT_METHODS) else ""))

    spheres, phantom_source, phantom_tag = _resolve_phantom(phantom, seed, n_spheres)
    _log(f"foam benchmark: {n_slices} slice(s), detector rows {rows[0]}..{rows[-1]} of {geom.n_rows}; "
         f"{geom.n_angles} angles, {geom.n_det} columns, {geom.n_pixels}^2 pixels, I0 = {i0:g}, K = {k}")
    _log(f"phantom: {phantom_source}")

    clean_sino, noisy_sino, sim_info = _simulate(out, geom, rows, spheres, phantom_tag, seed, i0, absorption)
    sino_key = Path(sim_info["cache"]).stem
    recs, rtimes, rec_cached = _reconstruct(out, geom, sino_key, clean_sino, noisy_sino, k)
    clean, noisy, splits = recs["clean"], recs["noisy"], recs["splits"]
    scorer = _Scorer(clean, centre)

    metrics: dict[str, Any] = {}
    images: dict[str, np.ndarray] = {}
    training: dict[str, Any] = {}

    def done(name: str) -> None:
        m = metrics[name]
        _log(f"  {name:9s} PSNR {m['psnr']:7.2f} dB  SSIM {m['ssim']:.3f}  {m['seconds']:7.1f} s")

    if "fbp" in methods:
        metrics["fbp"] = scorer.score(noisy, rtimes["fbp"], cached=rec_cached)
        images["fbp"] = noisy[centre]
        done("fbp")
    if "split" in methods:
        metrics["split"] = scorer.score(splits[0], rtimes["split"], cached=rec_cached)
        done("split")
    if "gaussian" in methods:
        t0 = time.perf_counter()
        grid = np.geomspace(0.5, 12.0, 12)
        best, _, tried = _oracle_search(lambda s: scorer.psnr(_gaussian(noisy, s)), grid, refine=4)
        t1 = time.perf_counter()
        img = _gaussian(noisy, best)
        t_one = time.perf_counter() - t1
        metrics["gaussian"] = scorer.score(img, time.perf_counter() - t0, sigma=best, seconds_single=t_one,
                                           tuning="oracle: sigma maximising PSNR vs ground truth",
                                           grid=[[float(a), float(b)] for a, b in tried])
        images["gaussian"] = img[centre]
        done("gaussian")
    if "tv" in methods:
        t0 = time.perf_counter()
        # TV weight in the image's units: grid relative to the clean data range
        grid = scorer.data_range * np.geomspace(0.05, 3.0, 8)
        tune_idx = np.arange(len(rows))
        if len(rows) > 8:  # tune on the 8 central slices, apply to all
            tune_idx = np.arange(centre - 4, centre + 4).clip(0, len(rows) - 1)
        sub = _Scorer(clean[tune_idx], 0)
        sub.data_range = scorer.data_range
        best, _, tried = _oracle_search(lambda w: sub.psnr(_tv(noisy[tune_idx], w)), grid, refine=3)
        t1 = time.perf_counter()
        img = _tv(noisy, best)
        t_one = time.perf_counter() - t1
        metrics["tv"] = scorer.score(img, time.perf_counter() - t0, weight=best, seconds_single=t_one,
                                     tuning="oracle: weight maximising PSNR vs ground truth",
                                     grid=[[float(a), float(b)] for a, b in tried])
        images["tv"] = img[centre]
        done("tv")
    if "bm3d" in methods:
        t0 = time.perf_counter()
        img, sigma = _bm3d(noisy)
        metrics["bm3d"] = scorer.score(img, time.perf_counter() - t0, sigma_psd=sigma,
                                       tuning="sigma from skimage.restoration.estimate_sigma (no ground truth)")
        images["bm3d"] = img[centre]
        done("bm3d")
    for name in N2I_METHODS:
        if name not in methods:
            continue
        t0 = time.perf_counter()
        img, info = _run_n2i(name, setups[name], splits, minutes, out, seed, progress, device)
        metrics[name] = scorer.score(img, time.perf_counter() - t0)
        training[name] = info
        images[name] = img[centre]
        done(name)
        np.save(out / f"{name}_denoised.npy", img)

    summary = _summary(metrics)
    machine = _machine()
    meta = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine,
        "command": command,
        "argv": " ".join(shlex.quote(a) for a in sys.argv),
        "n_slices": n_slices,
        "slice_indices": rows.tolist(),
        "centre_slice": int(centre_row),
        "phantom": phantom_source,
        "geometry": {**asdict(geom), "pixel_size": geom.pixel_size,
                     "angles": f"linspace(0, pi, {geom.n_angles}, endpoint=False)"},
        "noise": {"model": "Poisson", "i0": i0, "absorption": absorption, "seed": seed,
                  "zero_count_fraction": sim_info.get("zero_count_fraction")},
        "splits": {"k": k, "strategy": "X:1", "recon": "FBP ram-lak"},
        "data_range": scorer.data_range,
        "ground_truth": "FBP of the clean projections, all angles",
        "simulation": sim_info,
        "reconstruction_seconds": rtimes,
        "training": training,
        "gaussian_sigma": metrics.get("gaussian", {}).get("sigma"),
        "tv_weight": metrics.get("tv", {}).get("weight"),
        "published": PUBLISHED,
        "summary": summary,
        "total_seconds": None,
    }
    metrics["meta"] = meta

    _write_preview(out / "preview.png", images, clean[centre],
                   f"foam, slice {centre_row}, I0={i0:g}, K={k}")
    meta["total_seconds"] = time.perf_counter() - t_start
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    report = render_report(metrics)
    (out / "results.md").write_text(report + "\n")
    _log("\n" + report)
    _log(f"\nwrote {out / 'metrics.json'}, {out / 'preview.png'}, {out / 'results.md'}")
    return metrics


def render_report(metrics: dict[str, Any]) -> str:
    meta = metrics["meta"]
    s = meta["summary"]
    lines = [format_table(metrics), ""]
    if s["margin_db"] is not None:
        verdict = "MEETS" if s["meets_target"] else "does NOT meet"
        lines.append(f"Best N2I ({s['best_n2i']}) vs best classical ({s['best_classical']}): "
                     f"{s['margin_db']:+.2f} dB -> {verdict} the target (>= {s['target_db']:g} dB).")
    for name, info in meta["training"].items():
        lines.append(f"{name}: {info['model']} {info['params']} ({info['n_parameters']} parameters), "
                     f"{info['epochs_run']} epochs in {info['train_seconds'] / 60:.1f} min, best epoch "
                     f"{info['best_epoch']}, patches {info['patch_size']}, batch {info['batch_size']}, lr {info['lr']:g}; "
                     f"inference {info['inference_seconds']:.0f} s.")
    lines.append(f"Slices: {meta['n_slices']} (detector rows {meta['slice_indices'][0]}..{meta['slice_indices'][-1]}); "
                 f"phantom: {meta['phantom']}; data_range {meta['data_range']:.4f}.")
    lines.append(f"Machine: {_machine_line(meta['machine'])}.")
    lines.append(f"Date: {meta['date']}. Total {meta['total_seconds'] / 60:.1f} min.")
    lines.append(f"Reproduce: `{meta['command']}`")
    return "\n".join(lines)
