"""GainTuning at three doses: does the N2I split loss lead the gains towards the clean image?

For each I0: the FBP, the simulation-pretrained (SBD) network, the same network after
GainTuning, and the ceiling of any method trained on the N2I split loss against the clean FBP
(the PSNR of the FBP of the *expected* noisy sinogram, which carries the log bias of zero counts;
estimated from 300 noise draws). PSNR over slices 1-3, inside the reconstruction disk.

Then the same ceiling for the comparison benchmark's foam (:mod:`benchmarks.compare`). Usage:
``python -m benchmarks gaintuning_dose`` (about a minute on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import platform
import tempfile

import numpy as np
import torch

from tomodenoise.config import ModelConfig
from tomodenoise.methods.base import Context
from tomodenoise.methods.gaintuning import GainTuning
from tomodenoise.methods.sample import foam_phantom_sino, foam_scan
from tomodenoise.methods.tuning import fov_mask
from tomodenoise.metrics import psnr
from tomodenoise.recon import fbp
from tomodenoise.simulate.noise import poisson_noise

__all__ = ["add_arguments", "bench_foam_ceiling", "main"]

SIZE, ANGLES, SLICES, STEPS = 48, 128, 4, 150
MSD = ModelConfig(name="msd", params={"depth": 8})


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks gaintuning_dose``."""
    p.add_argument("--out", default="bench-output/compare",
                   help="folder of the comparison foam's cached sinograms (default %(default)s)")


def main(args: argparse.Namespace) -> int:
    """``python -m benchmarks gaintuning_dose``: the table of the three doses, then the foam's ceiling."""
    print(f"machine: {platform.platform()}, {torch.get_num_threads()} torch threads, "
          f"{'GPU' if torch.cuda.is_available() else 'no GPU'}")
    print(f"command: python -m benchmarks gaintuning_dose --out {args.out}  ({SIZE} px, {ANGLES} angles, "
          f"{SLICES} slices, "
          f"MS-D 8 x 1, {STEPS} steps)")
    clean_sino, angles, pixel = foam_phantom_sino(0, n_slices=SLICES, n_det=SIZE, n_angles=ANGLES)
    m = fov_mask(SIZE)
    keep = [1, 2, 3]
    print("| I0 | FBP | SBD network | after GainTuning | N2I-loss ceiling |")
    print("|---:|---:|---:|---:|---:|")
    for i0 in (10, 50, 1000):
        scan = foam_scan(0, n_slices=SLICES, n_det=SIZE, n_angles=ANGLES, i0=i0)
        dr = float(scan.clean.max() - scan.clean.min())

        def score(v: np.ndarray) -> float:
            return psnr(scan.clean[keep][:, m], v[keep][:, m], dr)

        res = GainTuning(model=MSD, lr=1e-2, steps=STEPS).run(
            scan, Context(seed=0, steps=STEPS, tune_slice=0, work_dir=tempfile.mkdtemp()))
        rng = np.random.default_rng(7)
        expected = np.mean([poisson_noise(clean_sino * pixel, i0, 2.76, rng) / pixel for _ in range(300)], axis=0)
        ceiling = score(fbp(expected, angles))
        print(f"| {i0} | {score(scan.fbp()):.2f} | {score(res.snapshots['pretrained']):.2f} | {score(res.volume):.2f} "
              f"| {ceiling:.2f} |")

    bench_foam_ceiling(args.out)
    return 0


def bench_foam_ceiling(out: str = "bench-output/compare") -> None:
    """The same ceiling for the foam of ``python -m benchmarks compare`` (its defaults: 6 slices of
    128 px, 256 angles, I0 10), from 200 noise draws."""
    from pathlib import Path

    from .compare import foam_compare_scan

    scan, _ = foam_compare_scan(Path(out), size=128, slices=6, angles=256)
    m, keep = fov_mask(128), list(range(1, 6))
    ref = scan.clean[keep][:, m]
    rng = np.random.default_rng(7)
    expected = np.mean([poisson_noise(scan.clean_sino, 10.0, 2.76, rng, pixel_size=2 / 128) for _ in range(200)],
                       axis=0)
    print(f"benchmark foam (128 px, 256 angles, I0 10): N2I-loss ceiling "
          f"{psnr(ref, fbp(expected, scan.angles)[keep][:, m], float(ref.max() - ref.min())):.2f} dB")
