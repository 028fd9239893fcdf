"""The scan store: one Zarr (v3) store per scan, in xarray conventions.

Layout (docs/DESIGN.md draws how the stages fill it)::

    <root>/<scan_id>/scan.zarr   sinogram (time, channel, z, angle, det)
                                 recon    (split, time, channel, z, y, x)
                                 denoised (time, channel, z, y, x)
                                 coords: angle [rad], time [s], channel (e.g. q), z, det,
                                 y, x, split; step_angles (time, angle) [rad] (NaN-padded)
                                 attrs: geometry, config, provenance, stages
    <root>/<scan_id>/model/      checkpoints
    <root>/<scan_id>/report/     metrics.json, PNG previews, report.md

Arrays are created with their metadata through xarray (``to_zarr(compute=False)``) and
filled chunk by chunk through zarr, one z-slab per chunk with whole slices in y and x, so
two writers never touch one chunk and writing a region twice gives the same bytes.
A stage is marked complete in the attributes only after all its chunks are written.
"""

from __future__ import annotations

import json
import platform
import subprocess
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

import numpy as np
import zarr

if TYPE_CHECKING:
    import xarray as xr

# xarray and dask.array are imported where they are used (create, init_array, open), not
# here: a reconstruction task on a Dask worker only reads and writes chunks through zarr,
# and their import (~1-2 s) would otherwise be paid by every worker before its first chunk.

DIMS = {
    "sinogram": ("time", "channel", "z", "angle", "det"),
    "recon": ("split", "time", "channel", "z", "y", "x"),
    "denoised": ("time", "channel", "z", "y", "x"),
}


def provenance() -> dict[str, Any]:
    """Package versions, git revision and host, for the store's attributes."""
    import importlib.metadata as md

    versions = {}
    for pkg in ("tomodenoise", "numpy", "torch", "astra-toolbox", "zarr", "xarray", "prefect"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        rev = None
    return {
        "versions": versions,
        "git_revision": rev,
        "host": platform.node(),
        "python": platform.python_version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def z_slabs(n_z: int, z_chunk: int) -> list[slice]:
    """The z-slabs (one per chunk) that cover ``n_z`` slices."""
    return [slice(s, min(s + z_chunk, n_z)) for s in range(0, n_z, z_chunk)]


@dataclass
class ScanStore:
    """Handle on ``<root>/<scan_id>/``: the Zarr store and its ``model/`` and ``report/`` folders."""

    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    # --- paths -----------------------------------------------------------------------
    @property
    def zarr_path(self) -> Path:
        return self.root / "scan.zarr"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    def exists(self) -> bool:
        return (self.zarr_path / "zarr.json").exists()

    # --- creation ----------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        root: str | Path,
        sinogram: np.ndarray,
        angles: np.ndarray,
        *,
        z: np.ndarray | None = None,
        z_chunk: int = 4,
        attrs: dict[str, Any] | None = None,
        time: np.ndarray | None = None,
        time_attrs: dict[str, Any] | None = None,
        channel: np.ndarray | None = None,
        channel_attrs: dict[str, Any] | None = None,
        coords: dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, Any]]] | None = None,
    ) -> "ScanStore":
        """Write a new store holding the sinogram ``(time, channel, z, angle, det)``.

        ``angles`` are ``(angle,)`` radians shared by every time step, or ``(time, angle)``
        with each step's own angles (dynamic scans: steps may hold different numbers of
        projections; the shorter ones are padded with NaN angles and zero sinogram rows).
        Either way the store holds ``step_angles (time, angle)``; read a step's angles with
        :meth:`angles_of`. ``time`` and ``channel`` are the coordinate values (seconds;
        q bins), ``coords`` further coordinates ``name: (dims, values, attrs)``.

        Overwrites an existing ``scan.zarr`` at the same place (ingest is a pure function of
        the raw input and the configuration, so re-running it gives the same bytes).
        """
        sinogram = np.asarray(sinogram, dtype=np.float32)
        if sinogram.ndim != 5:
            raise ValueError(f"sinogram must be (time, channel, z, angle, det), got shape {sinogram.shape}")
        nt, nc, nz, na, nd = sinogram.shape
        angles = np.asarray(angles, dtype=np.float64)
        if angles.shape == (na,):
            step_angles = np.broadcast_to(angles, (nt, na)).copy()
            angle_coord = ("angle", angles, {"units": "rad"})
        elif angles.shape == (nt, na):
            step_angles = angles
            angle_coord = ("angle", np.arange(na), {"long_name": "projection within a time step (angles: step_angles)"})
        else:
            raise ValueError(f"angles must have shape ({na},) or ({nt}, {na}), got {angles.shape}")
        import xarray as xr

        store = cls(root)
        store.root.mkdir(parents=True, exist_ok=True)
        all_coords: dict[str, Any] = {
            "time": ("time", np.arange(nt) if time is None else np.asarray(time), dict(time_attrs or {})),
            "channel": ("channel", np.arange(nc) if channel is None else np.asarray(channel), dict(channel_attrs or {})),
            "z": np.arange(nz) if z is None else np.asarray(z),
            "angle": angle_coord,
            "det": np.arange(nd),
            "step_angles": (("time", "angle"), step_angles, {"units": "rad", "long_name": "angles of each time step "
                                                                                   "(NaN: padding)"}),
        }
        for name, (dims, values, a) in (coords or {}).items():
            all_coords[name] = (dims, np.asarray(values), dict(a))
        ds = xr.Dataset({"sinogram": (DIMS["sinogram"], sinogram)}, coords=all_coords)
        ds.attrs.update(_jsonable(attrs or {}))
        ds.attrs["stages"] = {}
        ds.attrs["provenance"] = provenance()
        ds.attrs["z_chunk"] = int(z_chunk)
        enc = {"sinogram": {"chunks": (1, 1, min(z_chunk, nz), na, nd)}}
        ds.to_zarr(store.zarr_path, mode="w", zarr_format=3, encoding=enc, consolidated=False)
        store.consolidate()
        return store

    def init_array(self, name: str, shape_extra: dict[str, int], coords: dict[str, np.ndarray] | None = None) -> None:
        """Create array ``name`` (``recon`` or ``denoised``) filled lazily, if absent.

        ``shape_extra`` gives the sizes of the dimensions the sinogram does not have
        (``split``, ``y``, ``x``). Existing arrays of the same shape are kept (resume); one of
        another shape is replaced.
        """
        dims = DIMS[name]
        base = self.open()
        sizes = {d: base.sizes[d] for d in ("time", "channel", "z")}
        sizes.update(shape_extra)
        shape = tuple(sizes[d] for d in dims)
        group = zarr.open_group(str(self.zarr_path), mode="r+")
        if name in group:
            if tuple(group[name].shape) == shape:
                return
            # Other settings (e.g. a different K): drop the old array and its resized coordinates.
            del group[name]
            for d in dims:
                if d in group and d not in ("time", "channel", "z") and group[d].shape != (sizes[d],):
                    del group[d]
            self.consolidate()
        zc = self.z_chunk
        chunks = tuple(min(zc, sizes["z"]) if d == "z" else (sizes[d] if d in ("y", "x") else 1) for d in dims)
        import dask.array as da
        import xarray as xr

        data = da.zeros(shape, chunks=chunks, dtype=np.float32)
        new_coords = {d: np.arange(sizes[d]) for d in dims if d not in ("time", "channel", "z")}
        new_coords.update(coords or {})
        ds = xr.Dataset({name: (dims, data)}, coords=new_coords)
        ds.attrs.update(self.attrs)  # to_zarr(mode="a") replaces the group's attributes
        enc = {name: {"chunks": chunks}}
        ds.to_zarr(self.zarr_path, mode="a", zarr_format=3, encoding=enc, compute=False, consolidated=False)
        self.consolidate()

    # --- access ------------------------------------------------------------------------
    def open(self) -> xr.Dataset:
        """The store as a lazy xarray Dataset."""
        import xarray as xr

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return xr.open_zarr(self.zarr_path, consolidated=None)

    def array(self, name: str, mode: str = "r") -> zarr.Array:
        return zarr.open_array(str(self.zarr_path / name), mode=mode)

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(zarr.open_group(str(self.zarr_path), mode="r").attrs)

    @property
    def z_chunk(self) -> int:
        return int(self.attrs.get("z_chunk", 4))

    @property
    def angles(self) -> np.ndarray:
        """The angles of time step 0 (all of a static scan), radians."""
        return self.angles_of(0)

    def angles_of(self, time: int) -> np.ndarray:
        """The angles (radians) of time step ``time``: the sinogram's first ``len`` rows."""
        group = zarr.open_group(str(self.zarr_path), mode="r")
        if "step_angles" not in group:  # stores written before dynamic scans
            return np.asarray(self.array("angle")[:], dtype=np.float64)
        a = np.asarray(group["step_angles"][time], dtype=np.float64)
        return a[: int(np.count_nonzero(np.isfinite(a)))]

    def update_attrs(self, **kw: Any) -> None:
        group = zarr.open_group(str(self.zarr_path), mode="r+")
        group.attrs.update(_jsonable(kw))
        self.consolidate()

    def write_region(self, name: str, region: tuple[slice | int, ...], data: np.ndarray) -> None:
        """Write whole chunks of ``name`` (the caller cuts work along chunk borders)."""
        self.array(name, mode="r+")[region] = np.asarray(data, dtype=np.float32)

    def consolidate(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(str(self.zarr_path))

    # --- stage status ------------------------------------------------------------------
    def stage_done(self, stage: str) -> bool:
        return self.stage_info(stage).get("status") == "complete"

    def stage_info(self, stage: str) -> dict[str, Any]:
        """What ``mark_stage`` recorded for ``stage`` (empty when it has not completed)."""
        return dict(self.attrs.get("stages", {}).get(stage, {}))

    def mark_stage(self, stage: str, **info: Any) -> None:
        stages = dict(self.attrs.get("stages", {}))
        stages[stage] = {"status": "complete", "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), **info}
        self.update_attrs(stages=stages)

    def clear_stage(self, *stages: str) -> None:
        current = dict(self.attrs.get("stages", {}))
        for s in stages:
            current.pop(s, None)
        self.update_attrs(stages=current)


def _jsonable(obj: Any) -> Any:
    """Round-trip through JSON so attributes hold only plain types."""
    return json.loads(json.dumps(obj, default=_default))


def _default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
