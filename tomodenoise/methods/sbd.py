"""Simulation-based denoising (SBD): a network trained on simulated scans, applied to the real one.

The scan's noise level is estimated from its own sinogram
(:func:`~tomodenoise.methods.noise_level.estimate_noise`); ``n_phantoms`` random foam phantoms
are projected at the scan's geometry (its angles, detector width and rotation axis), given
Poisson noise at that ``I0`` with the foam absorption factor (the model of
:func:`~tomodenoise.methods.sample.foam_scan`), and reconstructed by FBP with and without
noise. A network is trained supervised on (noisy FBP, clean FBP) slices, saved to
``ctx.work_dir / "sbd.pt"`` and applied to the real scan's full FBP (whose noise level the
simulation matched). ``pretrained`` reuses such a file and skips simulation and training.

The pretraining file (``torch.save``; ``weights_only`` loadable) holds ``format``
(``"tomodenoise-sbd"``), ``model`` (name and params), ``state_dict``, ``normalisation``,
``i0``, ``absorption``, ``geometry`` and ``pretrain_seconds``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from ..config import ModelConfig
from ..models import build_model
from ..recon import fbp
from ..simulate import generate_foam, poisson_noise, project_foam
from .base import Context, MethodResult, Scan, Timer
from .noise_level import FOAM_ABSORPTION, estimate_noise
from .training import LearnedConfig, apply, fit, make_model, normalisation_of, random_patches

__all__ = ["SBD_FORMAT", "SimulationBased", "load_pretrained", "save_pretrained", "simulate_pairs"]

SBD_FORMAT = "tomodenoise-sbd"


def simulate_pairs(scan: Scan, i0: float, *, n_phantoms: int, n_spheres: int, slices_per_phantom: int,
                   absorption: float = FOAM_ABSORPTION, seed: int = 0,
                   match_attenuation: bool = True) -> tuple[np.ndarray, np.ndarray, float]:
    """(noisy FBP, clean FBP), each ``(n_phantoms * slices_per_phantom, y, x)``, of random foams
    scanned at ``scan``'s geometry (angles, detector width; rotation axis at the centre) with Poisson noise at ``i0``, and the attenuation factor used.

    With ``match_attenuation`` the simulated line integrals are scaled so that their mean is
    the scan's (a material of the scan's density: the noise of a projection depends on how much
    it attenuates, and the network sees the scan's value range); otherwise the factor is 1.
    """
    n_det = scan.sino.shape[2]
    pixel = 2.0 / n_det
    sinos = []
    for p in range(n_phantoms):
        rng = np.random.default_rng([seed, p, 5150])
        spheres = generate_foam(rng, n_spheres=n_spheres)
        z = rng.uniform(-0.5, 0.5, slices_per_phantom)
        sinos.append(project_foam(spheres, scan.angles, n_det, z, pixel, supersampling=1))
    factor = 1.0
    if match_attenuation:
        sim_mean = float(np.mean([s.mean() for s in sinos]))
        factor = float(np.mean(scan.sino)) / sim_mean if sim_mean > 0 else 1.0
    noisy, clean = [], []
    for p, sino in enumerate(sinos):
        rng = np.random.default_rng([seed, p, 5151])
        sino = sino * factor
        noisy_sino = poisson_noise(sino * pixel, i0, absorption, rng) / pixel
        # projected about the detector centre, so reconstructed about it: the pairs carry no
        # centre error, like the scan's FBP about its own axis
        noisy.append(fbp(noisy_sino, scan.angles))
        clean.append(fbp(sino, scan.angles))
    return np.concatenate(noisy).astype(np.float32), np.concatenate(clean).astype(np.float32), factor


def save_pretrained(path: Path, model: nn.Module, model_cfg: ModelConfig, normalisation: dict[str, float],
                    **meta: Any) -> None:
    """Write a pretraining file (see the module docstring)."""
    dump = model_cfg.model_dump(mode="json")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": SBD_FORMAT, "model": {"name": dump["name"], "params": dump["params"]},
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "normalisation": {k: float(v) for k, v in normalisation.items()}, **meta}, path)


def load_pretrained(path: str | Path, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The network of a pretraining file written by :class:`SimulationBased`, and the rest of it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained network not found: {path}")
    raw = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(raw, dict) or raw.get("format") != SBD_FORMAT:
        raise ValueError(f"{path} is not a simulation-based pretraining file (format {SBD_FORMAT!r})")
    model = build_model(raw["model"]["name"], **raw["model"]["params"])
    model.load_state_dict(raw["state_dict"])
    return model.to(device).eval(), {k: v for k, v in raw.items() if k != "state_dict"}


class SimulationBased(LearnedConfig):
    """Train on simulated foams with the scan's estimated noise level, apply to the scan's FBP."""

    method: Literal["sbd"] = "sbd"
    needs: ClassVar[tuple[str, ...]] = ()

    n_phantoms: int = Field(4, ge=1, description="Random foam phantoms simulated for pretraining")
    n_spheres: int = Field(60, ge=1, description="Voids per simulated foam")
    slices_per_phantom: int = Field(4, ge=1, description="Detector rows simulated per phantom")
    absorption: float = Field(FOAM_ABSORPTION, gt=0, description="Absorption factor of the noise model (foam benchmark)")
    i0: float | None = Field(None, gt=0, description="Photons per pixel to simulate; estimated from the scan when empty")
    match_attenuation: bool = Field(True, description="Scale the simulated foams to the scan's mean line integral")
    pretrained: str | None = Field(None, description="Reuse this pretraining file (skips simulation and training)")

    def pretrain(self, scan: Scan, ctx: Context) -> tuple[nn.Module, dict[str, Any]]:
        """The pretrained network and its metadata: loaded from ``pretrained``, or simulated,
        trained and saved to ``ctx.work_dir / "sbd.pt"`` (metadata gains ``path`` and ``simulated``)."""
        if self.pretrained is not None:
            model, meta = load_pretrained(self.pretrained, ctx.device)
            want = self.model.model_dump(mode="json")
            if meta["model"]["name"] != want["name"]:
                ctx.log(f"sbd: {self.pretrained} holds a {meta['model']['name']} network (config: {want['name']})")
            return model, {**meta, "path": str(self.pretrained), "simulated": False}
        noise = estimate_noise(scan, absorption=self.absorption)
        i0 = self.i0 if self.i0 is not None else noise.i0
        with Timer() as sim:
            noisy, clean, factor = simulate_pairs(
                scan, i0, n_phantoms=self.n_phantoms, n_spheres=self.n_spheres,
                slices_per_phantom=self.slices_per_phantom, absorption=self.absorption, seed=ctx.seed,
                match_attenuation=self.match_attenuation)
        norm = normalisation_of(noisy)
        m, s = norm["mean"], norm["std"]
        inp, tgt = (noisy - m) / s, (clean - m) / s

        def batches(rng: np.random.Generator):
            x, t = random_patches(rng, [inp, tgt], self.batch_size, self.patch_size)
            return torch.from_numpy(x), torch.from_numpy(t), None

        model = make_model(self.model, ctx.seed, ctx.device)
        stats = fit(model, batches, ctx, steps=self.steps or ctx.steps, lr=self.lr)
        path = Path(ctx.work_dir) / "sbd.pt"
        meta = {"i0": float(i0), "i0_estimated": noise.i0, "i0_given": noise.i0_given,
                "absorption": float(self.absorption), "n_phantoms": self.n_phantoms,
                "attenuation_factor": factor,
                "geometry": {"n_det": int(scan.sino.shape[2]), "n_angles": int(scan.angles.size)},
                "simulate_seconds": float(sim.seconds), "fit_seconds": float(stats["seconds"]),
                "pretrain_seconds": float(sim.seconds + stats["seconds"]), "steps": int(stats["steps"]),
                "final_loss": stats["loss"]}
        save_pretrained(path, model, self.model, norm, **meta)
        ctx.log(f"sbd: pretrained on {len(noisy)} simulated slices at I0 = {i0:.3g}, attenuation x{factor:.3g} "
                f"({meta['pretrain_seconds']:.1f} s) -> {path}")
        model_cfg = self.model.model_dump(mode="json")
        return model, {**meta, "model": model_cfg, "normalisation": norm, "path": str(path), "simulated": True}

    def run(self, scan: Scan, ctx: Context) -> MethodResult:
        noise = estimate_noise(scan, absorption=self.absorption)
        model, meta = self.pretrain(scan, ctx)
        volume = apply(model, scan.fbp(), meta["normalisation"], batch_size=self.batch_size)
        seconds = meta["pretrain_seconds"] if meta["simulated"] else 0.0
        return MethodResult(
            volume=volume,
            params={"i0": meta.get("i0"), "absorption": meta.get("absorption"), "n_phantoms": meta.get("n_phantoms"),
                    "attenuation_factor": meta.get("attenuation_factor"), "pretrain_seconds": float(seconds),
                    "pretrained": meta["path"]},
            train_seconds=float(seconds),
            info={"noise": noise.as_dict(), "simulated": meta["simulated"],
                  "pretrain_seconds": meta.get("pretrain_seconds"),
                  "simulate_seconds": meta.get("simulate_seconds"), "fit_seconds": meta.get("fit_seconds"),
                  "pretrained_path": meta["path"]},
        )
