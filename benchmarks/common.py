"""What every foam experiment shares: the geometry, the phantom, the cached simulation and
reconstructions (:func:`prepare_foam`), the scorer against the clean FBP, the machine record.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CACHE_VERSION", "PUBLISHED", "TARGET_MARGIN_DB", "FoamData", "FoamGeometry", "Scorer", "cache_key",
           "default_phantom_path", "file_tag", "load_npz", "log", "machine", "machine_line", "prepare_foam",
           "reconstruct", "repo_root", "resolve_phantom", "save_npz", "simulate"]

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


def repo_root() -> Path:
    """The checkout this package lives in (``benchmarks/..``)."""
    return Path(__file__).resolve().parents[1]


def default_phantom_path() -> Path:
    """``<repo>/../shared/data/foam_n2i/phantom.h5`` (the reference foam)."""
    return (repo_root() / ".." / "shared" / "data" / "foam_n2i" / "phantom.h5").resolve()


def log(msg: str) -> None:
    print(msg, flush=True)


def file_tag(path: Path) -> str:
    st = path.stat()
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"{path.name}:{st.st_size}:{h.hexdigest()[:12]}"


def resolve_phantom(phantom: str | os.PathLike | None, seed: int, n_spheres: int) -> tuple[np.ndarray, str, str]:
    """The spheres, a human-readable source, and a cache tag.

    ``phantom``: a path to a ``phantom.h5``; ``None`` = the shared reference foam when
    present, else a generated foam; ``"generate"`` = always a foam generated from ``seed``.
    """
    from tomodenoise.simulate.foam import generate_foam, load_spheres

    if phantom is None:
        default = default_phantom_path()
        phantom = str(default) if default.is_file() else "generate"
    if str(phantom) == "generate":
        spheres = generate_foam(seed, n_spheres=n_spheres)
        source = f"generated foam (generate_foam(seed={seed}, n_spheres={n_spheres}), {len(spheres)} spheres)"
        return spheres, source, f"generated:{seed}:{n_spheres}"
    path = Path(phantom).expanduser().resolve()
    spheres = load_spheres(path)
    return spheres, f"{path} ({len(spheres)} spheres)", file_tag(path)


def cache_key(parts: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def save_npz(path: Path, **arrays: Any) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_npz(path: Path, key: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            return {k: z[k] for k in z.files}
    except (OSError, KeyError, ValueError):  # a damaged cache is recomputed
        return None


def machine() -> dict[str, Any]:
    import torch

    try:
        from tomodenoise.recon import gpu_available

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


def machine_line(m: dict[str, Any]) -> str:
    gpu = m["gpu"] or "no GPU"
    return (f"{m['platform']}, {m['cpu_count']} CPU cores ({m['processor']}), torch {m['torch']} "
            f"with {m['torch_threads']} threads, {gpu}")


class Scorer:
    """PSNR/SSIM against the clean FBP with one fixed data range (tomodenoise.metrics)."""

    def __init__(self, clean: np.ndarray, centre: int) -> None:
        from tomodenoise import metrics

        self.metrics = metrics
        self.clean = np.asarray(clean, dtype=np.float32)
        self.data_range = float(self.clean.max() - self.clean.min())
        self.centre = centre

    def psnr(self, img: np.ndarray, slices: Any = None) -> float:
        """PSNR of ``img`` (all slices, or ``img`` holds just ``slices`` of the volume)."""
        clean = self.clean if slices is None else self.clean[np.asarray(slices)]
        return float(self.metrics.psnr(clean, np.asarray(img, np.float32), data_range=self.data_range))

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


def simulate(out: Path, geom: FoamGeometry, rows: np.ndarray, spheres: np.ndarray, phantom_tag: str,
              seed: int, i0: float, absorption: float) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Clean and noisy sinograms ``(z, angle, det)`` in pixel units, cached in ``out``."""
    from tomodenoise.simulate.foam import project_foam
    from tomodenoise.simulate.noise import poisson_noise

    parts = {"v": CACHE_VERSION, "geometry": asdict(geom), "rows": rows.tolist(), "phantom": phantom_tag,
             "seed": seed, "i0": i0, "absorption": absorption}
    key = cache_key(parts)
    path = out / f"sinograms_n{len(rows)}_s{seed}_{key}.npz"
    cached = load_npz(path, key)
    if cached is not None:
        log(f"sinograms: cached {path.name}")
        return cached["clean"], cached["noisy"], {"cache": str(path), "cached": True,
                                                  "seconds": float(cached["seconds"])}
    angles = geom.angles()
    t0 = time.perf_counter()
    clean = project_foam(spheres, angles, geom.n_det, geom.z_positions(rows), geom.pixel_size,
                         supersampling=geom.supersampling)
    rng = np.random.default_rng(seed)
    noisy = poisson_noise(clean, i0, absorption, rng, pixel_size=geom.pixel_size)
    seconds = time.perf_counter() - t0
    save_npz(path, key=np.array(key), clean=clean, noisy=noisy, seconds=np.array(seconds),
              params=np.array(json.dumps(parts)))
    zero = float(np.mean(noisy >= -np.log(1.0 / i0) / (absorption * geom.pixel_size) - 1e-3))
    log(f"sinograms: simulated {clean.shape} in {seconds:.1f} s ({100 * zero:.1f} % zero counts), cached {path.name}")
    return clean, noisy, {"cache": str(path), "cached": False, "seconds": seconds, "zero_count_fraction": zero}


def reconstruct(out: Path, geom: FoamGeometry, sino_key: str, clean_sino: np.ndarray, noisy_sino: np.ndarray,
                 k: int) -> tuple[dict[str, np.ndarray], dict[str, float], bool]:
    """Clean and noisy full-angle FBPs and the K split FBPs, cached in ``out``."""
    from tomodenoise.recon import fbp, reconstruct_splits

    key = cache_key({"v": CACHE_VERSION, "sino": sino_key, "k": k, "n_pixels": geom.n_pixels, "filter": "ram-lak"})
    path = out / f"recon_{key}.npz"
    cached = load_npz(path, key)
    if cached is not None:
        log(f"reconstructions: cached {path.name}")
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
    save_npz(path, key=np.array(key), clean=clean, noisy=noisy, splits=splits, times=np.array(json.dumps(times)))
    log(f"reconstructions: FBP clean {times['clean']:.1f} s, noisy {times['fbp']:.1f} s, "
         f"{k} splits {times['splits']:.1f} s; cached {path.name}")
    return {"clean": clean, "noisy": noisy, "splits": splits}, times, False


@dataclass
class FoamData:
    """One simulated foam scan, reconstructed: what every experiment starts from."""

    geometry: FoamGeometry
    rows: np.ndarray
    centre: int  #: index of the detector's middle row among ``rows``
    clean: np.ndarray  #: (z, y, x) FBP of the clean projections: the ground truth
    noisy: np.ndarray  #: (z, y, x) FBP of the noisy projections, all angles
    splits: np.ndarray  #: (K, z, y, x) split FBPs
    scorer: Scorer
    phantom: str
    seed: int
    i0: float
    absorption: float
    k: int
    simulation: dict[str, Any] = field(default_factory=dict)
    recon_seconds: dict[str, float] = field(default_factory=dict)
    recon_cached: bool = False

    @property
    def centre_row(self) -> int:
        return int(self.geometry.n_rows // 2)

    def central(self, n: int) -> np.ndarray:
        """Indices of the ``n`` slices around the centre (for cheap PSNR curves)."""
        n = max(1, min(n, len(self.rows)))
        start = min(max(self.centre - n // 2, 0), len(self.rows) - n)
        return np.arange(start, start + n)


def prepare_foam(out: Path, n_slices: int, *, phantom: str | None = None, seed: int = 0, i0: float = 10.0,
                 absorption: float = 2.76, k: int = 4, geometry: FoamGeometry | None = None,
                 n_spheres: int = 1000) -> FoamData:
    """Simulate (or load from ``out``'s cache) and reconstruct ``n_slices`` central rows of a foam."""
    geom = geometry or FoamGeometry()
    rows = geom.rows(n_slices)
    centre = int(np.nonzero(rows == geom.n_rows // 2)[0][0])
    spheres, source, tag = resolve_phantom(phantom, seed, n_spheres)
    log(f"foam: {n_slices} slice(s), detector rows {rows[0]}..{rows[-1]} of {geom.n_rows}; {geom.n_angles} angles, "
        f"{geom.n_det} columns, {geom.n_pixels}^2 pixels, I0 = {i0:g}, K = {k}; phantom: {source}")
    clean_sino, noisy_sino, sim_info = simulate(out, geom, rows, spheres, tag, seed, i0, absorption)
    recs, rtimes, cached = reconstruct(out, geom, Path(sim_info["cache"]).stem, clean_sino, noisy_sino, k)
    return FoamData(geometry=geom, rows=rows, centre=centre, clean=recs["clean"], noisy=recs["noisy"],
                    splits=recs["splits"], scorer=Scorer(recs["clean"], centre), phantom=source, seed=seed, i0=i0,
                    absorption=absorption, k=k, simulation=sim_info, recon_seconds=rtimes, recon_cached=cached)
