"""Timing of ``tomodenoise preview`` on a simulated scan of a big detector (issue 19, item 4).

A foam-like ellipse phantom (a disk with a few hundred small voids and inclusions) is
projected exactly (:func:`tomodenoise.simulate.ellipses.ellipse_sinogram`) with an
off-centre rotation axis, Poisson noise is drawn per detector row, and the raw counts are
written as Data Exchange (``--rows`` rows; the preview reads only the central 32). Then
``tomodenoise preview`` runs on it; its wall and CPU seconds are printed with the centre
found and the true one. The CPU seconds are the honest figure on a shared machine.

    python -m benchmarks preview_centre --out /tmp/preview-bench   # 2048 px, 1500 projections
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np

__all__ = ["add_arguments", "main", "phantom"]


def phantom(width: int, rng: np.random.Generator, n_small: int = 600) -> np.ndarray:
    r = 0.42 * width
    rows = [(1.0, 0.0, 0.0, r, r, 0.0)]
    for _ in range(n_small):
        rho, phi = r * np.sqrt(rng.uniform(0, 0.85)), rng.uniform(0, 2 * np.pi)
        a = rng.uniform(1.5, 0.006 * width)
        rows.append((rng.choice([-0.9, 0.8]), rho * np.cos(phi), rho * np.sin(phi), a,
                     a * rng.uniform(0.5, 1.0), rng.uniform(0, np.pi)))
    return np.array(rows)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks preview_centre``."""
    p.add_argument("--out", required=True, help="folder for the scan and the preview")
    p.add_argument("--width", type=int, default=2048, help="detector columns (default %(default)s)")
    p.add_argument("--angles", type=int, default=1500, help="projections (default %(default)s)")
    p.add_argument("--rows", type=int, default=64, help="detector rows (default %(default)s)")
    p.add_argument("--center", type=float, default=1030.3, help="the true rotation axis (default %(default)s)")
    p.add_argument("--i0", type=float, default=5000.0, help="incident counts (default %(default)s)")


def main(args: argparse.Namespace) -> int:
    """``python -m benchmarks preview_centre``: simulate the scan (once), time the preview."""
    from tomodenoise.cli import main as cli
    from tomodenoise.io.dxchange import write_dxchange
    from tomodenoise.simulate.ellipses import ellipse_sinogram

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scan = out / f"ellipses_{args.width}x{args.angles}.h5"
    if not scan.exists():
        rng = np.random.default_rng(0)
        angles = np.linspace(0, np.pi, args.angles, endpoint=False)
        t = time.perf_counter()
        sino = ellipse_sinogram(phantom(args.width, rng), angles, args.width, center=args.center)
        sino *= np.float32(2.0 / sino.max())  # at most ~86 % absorbed
        expected = args.i0 * np.exp(-sino)[:, None, :]
        counts = np.empty((args.angles, args.rows, args.width), dtype=np.uint16)
        for z in range(args.rows):
            counts[:, z] = rng.poisson(expected[:, 0]).clip(1, 65535)
        flats = np.full((8, args.rows, args.width), args.i0, dtype=np.float32)
        write_dxchange(scan, counts, flats, np.zeros_like(flats), angles)
        print(f"simulated {scan} in {time.perf_counter() - t:.1f} s")
    png = out / "preview_centre.png"
    t, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    rc = cli(["preview", str(scan), "--out", str(png)])
    c1 = resource.getrusage(resource.RUSAGE_SELF)
    wall, cpu = time.perf_counter() - t, (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
    import json

    from PIL import Image

    info = json.loads(Image.open(png).text["tomodenoise"])
    print(f"rc {rc}: tomodenoise preview on {args.width} px x {args.angles} projections: {wall:.1f} s wall, "
          f"{cpu:.1f} s CPU; centre found {info['center']:.2f} (true {args.center}); preview part "
          f"{info['seconds']:.1f} s; {png}")
    return int(rc)
