"""What every comparison method gets and gives back.

A method is a pydantic config class (its parameters, with ``method: Literal["<name>"]`` as the
discriminator) whose :meth:`MethodConfig.run` maps a :class:`Scan` and a :class:`Context` to a
:class:`MethodResult`. The comparison (:mod:`tomodenoise.methods.compare`) calls every chosen
method twice: on the whole scan (the reported volume, PSNR/SSIM against ``scan.clean``) and on
the angles of three of six interlaced groups (uPSNR against the other three's FBPs, so that
every method is judged without ground truth in the same way).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..recon import fbp as _fbp_volume
from ..splits import split_indices

__all__ = ["Context", "MethodConfig", "MethodResult", "Scan", "Timer"]


@dataclass
class Scan:
    """A preprocessed parallel-beam scan and what is known about it.

    Attributes
    ----------
    sino : numpy.ndarray
        ``(z, angle, det)`` float32 line integrals (after flat/dark and -log).
    angles : numpy.ndarray
        ``(angle,)`` radians.
    center : float, optional
        Rotation-axis column (default the detector middle).
    clean : numpy.ndarray, optional
        ``(z, y, x)`` clean reference on the reconstruction grid (a simulation's noise-free
        FBP, or a high-dose scan): enables PSNR/SSIM and the supervised methods.
    clean_sino : numpy.ndarray, optional
        Noise-free line integrals of a simulation, same shape as ``sino``.
    second : Scan, optional
        An independent repeat scan of the same object (Noise2Noise).
    i0 : float, optional
        Incident photons per detector pixel when known (simulations) or estimated.
    name : str
        For tables and logs.
    """

    sino: np.ndarray
    angles: np.ndarray
    center: float | None = None
    clean: np.ndarray | None = None
    clean_sino: np.ndarray | None = None
    second: Scan | None = None
    i0: float | None = None
    name: str = "scan"
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.sino = np.ascontiguousarray(self.sino, dtype=np.float32)
        self.angles = np.asarray(self.angles, dtype=np.float64)
        if self.sino.ndim != 3:
            raise ValueError(f"Scan.sino must be (z, angle, det), got shape {self.sino.shape}")
        if self.sino.shape[1] != self.angles.size:
            raise ValueError(f"Scan: {self.sino.shape[1]} projections but {self.angles.size} angles")
        if self.clean is not None and self.clean.shape != self.shape:
            raise ValueError(f"Scan.clean must be {self.shape} (z, y, x), got {self.clean.shape}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(z, y, x)`` of the reconstruction grid (square, the detector width)."""
        z, _, w = self.sino.shape
        return (z, w, w)

    def fbp(self, indices: np.ndarray | None = None, filter: str = "ram-lak") -> np.ndarray:  # noqa: A002
        """FBP ``(z, y, x)`` of all projections, or of ``indices`` only (cached)."""
        key = f"fbp-{filter}-" + ("all" if indices is None else
                                  hashlib.sha1(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest())
        if key not in self._cache:
            sino, ang = (self.sino, self.angles) if indices is None else (self.sino[:, indices], self.angles[indices])
            self._cache[key] = _fbp_volume(sino, ang, center=self.center, filter=filter)
        return self._cache[key]

    def split_fbps(self, k: int) -> np.ndarray:
        """``(k, z, y, x)`` FBPs of the k interlaced angle splits."""
        return np.stack([self.fbp(idx) for idx in split_indices(self.angles.size, k)])

    def subset(self, indices: np.ndarray) -> Scan:
        """The scan with projections ``indices`` only (clean reference kept; repeat scan subset too)."""
        idx = np.sort(np.asarray(indices, dtype=np.int64))
        return replace(
            self, sino=self.sino[:, idx], angles=self.angles[idx],
            clean_sino=None if self.clean_sino is None else self.clean_sino[:, idx],
            second=None if self.second is None else self.second.subset(idx), _cache={})

    def slices(self, z: slice | list[int]) -> Scan:
        """The scan restricted to detector rows ``z`` (for tuning on a held-out slice)."""
        return replace(
            self, sino=self.sino[z], clean=None if self.clean is None else self.clean[z],
            clean_sino=None if self.clean_sino is None else self.clean_sino[z],
            second=None if self.second is None else self.second.slices(z), _cache={})


@dataclass
class Context:
    """What the comparison fixes for every method alike.

    Attributes
    ----------
    seed : int
        Seeds every random choice.
    device : str
        ``cpu`` or ``cuda``.
    steps : int
        Optimiser steps of every learned method (the same for all: "same network and steps").
    minutes : float, optional
        Wall-clock cap per learned method (a safety net; ``steps`` is the budget).
    tune_slice : int
        Index (into ``scan``'s z) of the slice methods tune their parameter on; it is left out
        of the reported metrics. ``-1`` when the scan has one slice (nothing held out).
    work_dir : pathlib.Path
        Scratch and checkpoints for this method.
    log : callable
        ``log(message)``: one line for the console.
    """

    seed: int = 0
    device: str = "cpu"
    steps: int = 500
    minutes: float | None = None
    tune_slice: int = -1
    work_dir: Path = Path(".")
    log: Callable[[str], None] = lambda msg: None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class MethodResult:
    """A method's output volume and what it chose.

    ``snapshots``: optional intermediate outputs on the same input (label -> ``(z, y, x)``,
    e.g. checkpoints of a training run), scored like the final volume so that the uPSNR check
    can rank checkpoints too; ``info["snapshot_seconds"]`` (label -> training seconds so far)
    lets the comparison tell how long a method took to reach a quality. ``train_seconds``: time spent training (learned methods),
    ``seconds``: the whole run (set by the comparison).
    """

    volume: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)
    train_seconds: float | None = None
    seconds: float | None = None
    snapshots: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


class MethodConfig(BaseModel):
    """Base of every method's config: strict, with ``method`` as the discriminator."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    #: what the method needs of the scan: "clean" (supervised) or "second" (Noise2Noise)
    needs: ClassVar[tuple[str, ...]] = ()

    name: str | None = Field(None, description="Label in tables and panels (default: the method name)")

    def run(self, scan: Scan, ctx: Context) -> MethodResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def required(self) -> tuple[str, ...]:
        """What this config needs of the scan (``needs``, unless a parameter changes it)."""
        return self.needs

    @property
    def label(self) -> str:
        """Name in tables and panels."""
        return self.name or str(getattr(self, "method"))


class Timer:
    """``with Timer() as t: ...``; ``t.seconds`` afterwards."""

    def __enter__(self) -> Timer:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.t0
