"""The one configuration tree of a tomodenoise run.

Every section is a strict pydantic model (unknown keys are errors; a removed setting is an
error that says so), the whole tree round-trips through YAML, and it is stored with every
checkpoint and in the scan store's attributes. ``demo_config`` builds the demo's variant;
``apply_sets`` and ``parse_sets`` read ``--set section.key=value`` overrides. A configuration that
cannot be used (bad YAML, a bad ``--set`` item, a refused value) is a :class:`ConfigError` of one
sentence; pydantic's and PyYAML's own text goes to the log at DEBUG.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .config_errors import ConfigError, validated, yaml_problem

__all__ = ["ChannelConfig", "ComputeConfig", "ConfigError", "InferenceConfig", "InputConfig", "ModelConfig",
           "OutputConfig", "PreprocessConfig", "ReconConfig", "RunConfig", "SplitConfig", "TimeConfig", "TrainConfig",
           "apply_sets", "demo_config", "parse_sets"]

log = logging.getLogger(__name__)


class _Strict(BaseModel):
    """A section: unknown keys are errors; a key of ``removed`` is an error that says why it went,
    unless it holds the value the code always used (``retired``): then it is dropped, with a warning."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    #: Settings that were removed: key -> what replaces it, one sentence with the key's full name.
    removed: ClassVar[dict[str, str]] = {}
    #: Removed settings that old configuration files still carry: key -> the value that changed
    #: nothing (accepted and dropped, with the ``removed`` sentence as a warning).
    retired: ClassVar[dict[str, Any]] = {}

    @model_validator(mode="before")
    @classmethod
    def _refuse_removed(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in sorted(set(data) & set(cls.removed)):
                if key in cls.retired and data[key] == cls.retired[key]:
                    logging.getLogger(__name__).warning("%s", cls.removed[key])
                    data = {k: v for k, v in data.items() if k != key}
                else:
                    raise ValueError(cls.removed[key])
        return data


class InputConfig(_Strict):
    """Where the scan comes from."""

    path: str | None = Field(None, description="Scan file or folder (HDF5, NeXus, TIFF folder, .npy/.npz, .zarr)")
    format: Literal["auto", "dxchange", "nexus", "tiff", "npy", "npz", "zarr", "xrdct", "pencil"] = "auto"
    angles_file: str | None = Field(None, description="Text/NumPy file of angles (TIFF stacks, raw .npy projections)")
    angles_unit: Literal["deg", "rad"] = Field(
        "deg", description="Unit of angles in angles_file, and of stored angles without a units attribute; angles "
                           "read as degrees that span at most 2 pi are refused as radians (set rad then)")
    flats: str | None = Field(
        None, description="Flat fields kept apart from the scan: a TIFF, .npy or HDF5 file (Data Exchange, NXtomo), "
                          "a folder or a glob of them; replaces the flats found in the scan")
    darks: str | None = Field(
        None, description="Dark fields kept apart from the scan (like flats); replaces the darks found in the scan")
    slices: tuple[int, int] | None = Field(None, description="Detector rows [start, stop) to process; all when empty")
    scan_id: str | None = Field(None, description="Name of the output folder; the file stem when empty")
    entry: str | None = Field(None, description="NeXus/HDF5 entry to read in a file with several (e.g. "
                                                "/entry2); empty: the first entry a reader understands")


class PreprocessConfig(_Strict):
    """Flat/dark correction, -log and centre of rotation."""

    center: float | None = Field(None, description="Centre of rotation (0-based detector column); found when empty")
    center_search: float = Field(0.25, gt=0, le=0.5, description="Search +- this fraction of the width around the middle")
    log_min: float = Field(1e-6, gt=0, description="Transmission values below this are clamped before -log")
    max_clamped_fraction: float = Field(
        0.01, ge=0, le=1, description="Refuse the scan when more than this fraction of the transmission values is "
                                      "zero or negative (clamped before -log; e.g. darks larger than flats)")


class TimeConfig(_Strict):
    """Dynamic (4D) scans: time steps are windows of the projection stream (continuous rotation)."""

    window: Literal["auto", "none", "angle", "time"] = Field(
        "auto", description="How to cut the stream into time steps: angle (span_deg of rotation each), time "
                            "(seconds each, from the time stamps), none (one static volume); auto: time when "
                            "seconds is set, angle when the acquisition is a continuous rotation of more than 1.5 turns, "
                            "else none")
    span_deg: float = Field(180.0, gt=0, le=3600, description="Rotation per time step (angle windows): 180 or 360")
    seconds: float | None = Field(None, gt=0, description="Length of a time step in seconds (time windows)")
    offset: float = Field(0.0, ge=0, description="Start of the first window after the first projection "
                                                 "(degrees for angle windows, seconds for time windows)")
    steps: tuple[int, int] | None = Field(None, description="Keep only time steps [start, stop); all when empty")


class ChannelConfig(_Strict):
    """Multi-channel scans (XRD-CT: one sinogram per diffraction channel)."""

    normalise: bool = Field(True, description="Normalise every channel by its own mean and standard deviation "
                                              "before training (diffraction channels span orders of magnitude)")
    select: tuple[int, int] | None = Field(None, description="Keep only channels [start, stop); all when empty")


class SplitConfig(_Strict):
    """How projections are divided into K sets with independent noise."""

    removed: ClassVar[dict[str, str]] = {
        "scheme": "splits.scheme was removed and had no effect (the splits are always interlaced: split j holds "
                  "angles j, j+k, j+2k, ...): delete it from the configuration"}
    retired: ClassVar[dict[str, Any]] = {"scheme": "interlaced"}  # what `tomodenoise config` used to write

    k: int = Field(4, ge=2, description="Number of splits; at most the projections of the shortest time step "
                                        "(checked against the scan), 8 or more projections a split advised")


class ReconConfig(_Strict):
    """Split reconstruction with ASTRA."""

    algorithm: Literal["fbp", "sirt"] = "fbp"
    filter: str = Field("ram-lak", description="FBP filter: ram-lak, shepp-logan, cosine, hamming, hann")
    iterations: int = Field(100, ge=1, description="SIRT iterations")
    n_pixels: int | None = Field(None, ge=8, description="Reconstruction grid size (n x n); detector width when empty")
    use_gpu: Literal["auto", "yes", "no"] = "auto"
    z_chunk: int = Field(4, ge=1, description="Slices per Zarr chunk and per reconstruction task")

    @field_validator("filter")
    @classmethod
    def _known_filter(cls, v: str) -> str:
        from .recon.checks import normalise_filter

        return normalise_filter(v)


class ModelConfig(_Strict):
    """The denoising network, by registry name and its parameters."""

    name: str = Field("msd", description="Registry name: msd, unet, dncnn (tomodenoise.models.available_models())")
    params: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the network; empty for "
                                                                     "msd: sized by the recipe (depth 30, width 1)")


class TrainConfig(_Strict):
    """Noise2Inverse training."""

    strategy: Literal["X:1", "1:X"] = "X:1"
    epochs: int | Literal["auto"] = Field(
        "auto", description="Epochs; auto: enough for the recipe's planned steps (the time budget usually ends "
                            "the run first)")
    batch_size: int | Literal["auto"] = Field("auto", description="Batch; auto: 4 on a CPU, 16 on a GPU")
    lr: float | Literal["auto"] = Field("auto", description="Adam's learning rate; auto: 2e-3 (measured)")
    patch_size: int | Literal["auto"] | None = Field(
        "auto", description="Random square patches of this size; empty: whole slices; auto: 128 px, whole "
                            "slices of at most 160 px")
    patches_per_slice: int | Literal["auto"] = Field(
        "auto", description="Patches drawn per (slice, split) in one epoch; auto: about 100 steps an epoch")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="Held-out slices for the N2I validation loss")
    val_slices: list[int] | None = Field(None, description="Explicit held-out z slices (overrides val_fraction)")
    augment: bool = Field(True, description="The 8 rotations and flips of the square, one at random per training pair")
    neighbours: int | Literal["auto"] = Field(
        "auto", description="Inputs of this many neighbours on each side (slices, time steps or channels: "
                            "neighbour_axis) as extra input channels (the target stays one image); 0 = one "
                            "channel; auto: 2 when the axis has 5 or more, fewer on thinner volumes")
    neighbour_axis: Literal["z", "time", "channel"] = Field(
        "z", description="Axis of the neighbours: z (slices), time (time steps of a dynamic scan: the "
                         "time-neighbour variant) or channel (XRD-CT)")
    early_stopping: int = Field(10, ge=0, description="Epochs without validation improvement before stopping; 0 = never")
    min_delta: float = Field(0.0, ge=0.0, lt=1.0,
                             description="Relative improvement of the held-out loss that counts for early stopping")
    max_minutes: float | None = Field(None, gt=0, description="Training time budget; the learning-rate schedule ends "
                                                                "with it. Empty: 10 minutes on a CPU, 60 on a GPU")
    schedule: Literal["cosine", "onecycle", "constant"] = Field(
        "cosine", description="Learning rate over the run (steps or time budget, whichever ends first): "
                              "cosine (warm-up, cosine decay), onecycle, constant")
    warmup: float = Field(0.05, ge=0.0, le=0.5, description="Fraction of the run spent warming up (cosine)")
    grad_clip: float | None = Field(1.0, gt=0, description="Clip the gradients' global norm to this; empty: no clipping")
    init_from: str | None = Field(None, description="Warm start: initial weights from this checkpoint (e.g. a model "
                                                     "trained on another scan of the same kind); fresh optimiser")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    resume: str | None = Field(None, description="Checkpoint to resume from")
    progress: bool = True
    ranks: int | Literal["auto"] = Field(
        1, description="Training processes (PyTorch DDP, started by torchrun's launcher): 1 = one process; n = n "
                       "ranks (one per GPU with NCCL when the GPUs are there, else gloo on CPU cores); auto = one "
                       "per visible GPU (1 without a GPU)")
    rank_timeout: float = Field(300.0, gt=0, description="Seconds a rank waits for the others in a collective "
                                                         "before the training fails (a dead rank never hangs it)")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="bf16 autocast on GPUs that support it (auto), always (bf16) or never (fp32)")

    @field_validator("epochs", "batch_size", "patches_per_slice")
    @classmethod
    def _positive(cls, v: int | str) -> int | str:
        if v != "auto" and int(v) < 1:
            raise ValueError("must be >= 1 or 'auto'")
        return v

    @field_validator("lr")
    @classmethod
    def _positive_lr(cls, v: float | str) -> float | str:
        if v != "auto" and not float(v) > 0:
            raise ValueError("must be > 0 or 'auto'")
        return v

    @field_validator("patch_size")
    @classmethod
    def _patch(cls, v: int | str | None) -> int | str | None:
        if v not in (None, "auto") and int(v) < 8:
            raise ValueError("must be >= 8, empty (whole slices) or 'auto'")
        return v

    @field_validator("neighbours")
    @classmethod
    def _neighbours(cls, v: int | str) -> int | str:
        if v != "auto" and not 0 <= int(v) <= 8:
            raise ValueError("must be 0..8 or 'auto'")
        return v

    @field_validator("ranks")
    @classmethod
    def _positive_ranks(cls, v: int | str) -> int | str:
        if v != "auto" and int(v) < 1:
            raise ValueError("train.ranks must be >= 1 or 'auto'")
        return v


class InferenceConfig(_Strict):
    """Denoising the volume with the trained network (sharded over the Dask workers by the flows)."""

    batch_size: int = Field(4, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="bf16 autocast on GPUs that support it (auto), always (bf16) or never (fp32)")
    tile: int | None = Field(None, ge=16, description="Infer slices larger than this in overlapping square tiles "
                                                     "blended smoothly; whole slices when empty")
    tile_overlap: int = Field(32, ge=0, description="Pixels shared by neighbouring tiles")


class ComputeConfig(_Strict):
    """Where the work runs (used by the flows)."""

    cluster: Literal["local", "local_cuda", "address", "slurm", "threads"] = Field(
        "local", description="Dask cluster for the chunked work: local (LocalCluster), local_cuda (one worker per "
                             "GPU; CPU fallback), address (existing scheduler), slurm (dask-jobqueue), threads (no Dask)")
    n_workers: int = Field(2, ge=1, description="Worker processes (local) or SLURM jobs (slurm)")
    threads_per_worker: int = Field(1, ge=1)
    address: str | None = Field(None, description="Scheduler address for cluster = address, e.g. tcp://head:8786")
    slurm: dict[str, Any] = Field(default_factory=dict, description="dask_jobqueue.SLURMCluster keyword arguments")
    tasks_per_worker: int = Field(3, ge=1, description="Reconstruction and inference tasks per worker: the work "
                                                       "is cut into about this many tasks per worker")
    task_memory: str = Field("2GiB", description="Most memory one task may hold (e.g. 512MiB, 4GiB): large "
                                                 "scans are cut into more, smaller tasks")


class OutputConfig(_Strict):
    root: str = Field("tomodenoise-output", description="Folder under which <scan_id>/ is written")
    previews: int = Field(3, ge=0, description="Number of preview slices written as PNG")
    overwrite: bool = Field(False, description="Replace results of a different scan stored under the same scan id")
    export: list[Literal["ome-zarr", "tiff"]] = Field(
        default_factory=list, description="Also write the denoised volume (and the FBP) as multiscale OME-Zarr "
                                          "(napari, Fiji) and/or a TIFF stack under <scan_id>/export/")


class RunConfig(_Strict):
    """A whole run: input -> preprocess -> time steps -> splits -> recon -> train -> denoise -> report."""

    input: InputConfig = Field(default_factory=InputConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    time: TimeConfig = Field(default_factory=TimeConfig)
    channels: ChannelConfig = Field(default_factory=ChannelConfig)
    splits: SplitConfig = Field(default_factory=SplitConfig)
    recon: ReconConfig = Field(default_factory=ReconConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    compute: ComputeConfig = Field(default_factory=ComputeConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: ModelConfig) -> ModelConfig:
        from .models import available_models

        if v.name not in available_models():
            raise ValueError(f"unknown model {v.name!r}; available: {', '.join(available_models())}")
        from .models import model_defaults

        known = model_defaults(v.name)
        unknown = sorted(set(v.params) - set(known))
        if unknown:
            raise ValueError(f"model {v.name!r} has no parameter(s) {', '.join(unknown)}; "
                             f"its parameters: {', '.join(sorted(known))}")
        return v

    def with_overrides(self, overrides: dict[str, Any] | None) -> "RunConfig":
        """A new, re-validated configuration with nested ``overrides`` merged in.

        ``{"train": {"epochs": 5}}`` changes one value and keeps the rest of ``train``;
        unknown sections or keys, and refused values, are a :class:`ConfigError`.
        """
        if not overrides:
            return self.model_copy(deep=True)
        if not isinstance(overrides, dict):
            raise ConfigError(f"the overrides must be a mapping of sections, got {type(overrides).__name__}",
                              "the overrides")
        return validated(RunConfig, _merge(self.model_dump(mode="json"), overrides), lambda key: "the overrides")

    # --- YAML round trip -------------------------------------------------------------
    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str, source: str = "the configuration YAML") -> "RunConfig":
        """The configuration in YAML ``text``; ``source`` names it in a :class:`ConfigError`."""
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            log.debug("%s is not valid YAML:\n%s", source, exc)
            raise ConfigError(f"{source} {yaml_problem(exc)}", source) from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: the configuration must be a mapping of sections (input:, train:, ...) "
                              f"at the top level, not a {type(data).__name__}", source)
        return validated(RunConfig, data, lambda key: source)

    @classmethod
    def from_file(cls, path: str | Path) -> "RunConfig":
        """The configuration in the YAML file ``path``; a file that cannot be read or used is a
        :class:`ConfigError` naming it."""
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or str(exc)
            raise ConfigError(f"cannot read the configuration file {path}: {why}", str(path)) from exc
        return cls.from_yaml(text, str(path))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_yaml())
        return path


def _parse_set(item: str) -> tuple[list[str], Any]:
    """``"train.lr=1e-3"`` -> ``(["train", "lr"], 0.001)``: the value read as JSON, else as YAML
    (JSON first, so that 1e-3 is a number, which YAML 1.1 reads as text); empty is null."""
    key, sep, raw = item.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        what = "no '='" if not sep else "an empty key" if not key.strip() else f"an empty part in the key {key.strip()!r}"
        raise ConfigError(f"--set {item}: expected section.key=value (e.g. train.epochs=5), got {what}",
                          f"--set {item}")
    try:
        return parts, json.loads(raw)
    except ValueError:
        pass
    try:
        return parts, yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        log.debug("--set %s: the value is not valid YAML:\n%s", item, exc)
        raise ConfigError(f"--set {item}: the value is neither JSON nor YAML "
                          f"({getattr(exc, 'problem', None) or str(exc).splitlines()[0]})", f"--set {item}") from None


def parse_sets(items: Sequence[str] | None) -> dict[str, Any]:
    """``["train.epochs=5", "splits.k=4"]`` -> ``{"train": {"epochs": 5}, "splits": {"k": 4}}``: the
    nested overrides of ``--set`` options (e.g. for :meth:`RunConfig.with_overrides` on the worker).

    Not validated here (the client that sends them may not have the configuration the run uses);
    a :class:`ConfigError` on an item that is not ``section.key=value`` or that sets inside a value
    given before.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        parts, value = _parse_set(item)
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item}: {p!r} was already given a value", f"--set {item}")
        node[parts[-1]] = value
    return out


def apply_sets(cfg: RunConfig, sets: Sequence[str] | None) -> RunConfig:
    """``cfg`` with ``--set section.key=value`` overrides (values read as :func:`parse_sets` does),
    re-validated strictly. Each item sets one value: ``model.params.depth=5`` keeps the other params.
    A refused value is a :class:`ConfigError` that names the ``--set`` item that gave it."""
    data = cfg.model_dump(mode="json")
    given: list[tuple[list[str], str]] = []
    for item in sets or []:
        parts, value = _parse_set(item)
        node = data
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                raise ConfigError(f"--set {item}: {p!r} is not a configuration section", f"--set {item}")
            node = node[p]
        node[parts[-1]] = value
        given.append((parts, item))

    def origin(key: list[str]) -> str:  # the last item that set this key, a key inside it, or its section
        items = [item for parts, item in given if parts[:len(key)] == key or key[:len(parts)] == parts]
        return f"--set {items[-1]}" if items else "the --set options"

    return validated(RunConfig, data, origin)


def demo_config(**overrides: Any) -> RunConfig:
    """``run``'s defaults (the measured recipe) with a 2-minute training budget: the whole pipeline
    in minutes on a laptop CPU.

    ``overrides`` replace whole values or update sections: ``demo_config(train={"epochs": 5})``.
    """
    cfg = RunConfig(train=TrainConfig(max_minutes=2.0))
    return cfg.with_overrides({k: v.model_dump(mode="json") if isinstance(v, BaseModel) else v
                               for k, v in overrides.items()})


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in, recursively for nested mappings."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "params":
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out
