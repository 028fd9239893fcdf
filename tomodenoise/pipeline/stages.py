"""The stage contract, and the one list of the pipeline's stages.

A stage offers an executor four steps on a scan store (:class:`Stage`):

- ``plan(store, cfg, ctx)``: reads only. What the stage would refuse about the store and the
  machine is refused here (a store of another scan, ranks or devices this machine does not
  have), so ``tomodenoise check`` runs every stage's plan before anything is written; returns a
  :class:`Plan`: the units of work still to do, their memory estimate, or ``current`` when
  the stage is complete with these settings;
- ``start(store, cfg, plan, ctx)``: the side effects before the work (create the output
  array, forget outputs of other settings);
- ``run(store, cfg, unit, ctx)``: one unit of work, in any process that sees the store (a
  Dask worker, a thread, this one); returns how many chunks it wrote;
- ``finish(store, cfg, plan, ctx, seconds)``: check that every chunk is there, mark the
  stage complete.

``after(store, cfg, ctx)`` runs in a whole run once the stage is complete, also when it was
skipped (the centre preview after ingest). :data:`STAGES` is the order of a run. Executors
(:mod:`tomodenoise.pipeline.executor` here, the Prefect/Dask one in ``flows/``) run units;
only the units of ``chunked`` stages may run in parallel or in other processes.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..config import RunConfig
from ..io.store import ScanStore
from .keys import ORDER, input_identity, key_for, stage_current, stage_keys
from .layout import Layout
from .markers import Markers

__all__ = ["Chunked", "Context", "Plan", "STAGES", "Stage", "Whole", "refuse_all", "stage_named", "store_bytes"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Whole:
    """The unit of a stage that runs as one piece (ingest, train, report)."""

    stage: str

    @property
    def name(self) -> str:
        return self.stage

    def __len__(self) -> int:
        return 1


@dataclass
class Plan:
    """What a stage has left to do: ``units`` (each with a ``name`` and a length in chunks)."""

    stage: str
    units: list[Any] = field(default_factory=list)
    total: int = 1  # chunks of the whole stage
    unit_bytes: int = 0  # the most data one unit holds (0: not estimated)
    current: bool = False  # complete with these settings: nothing to run
    repair: list[Any] = field(default_factory=list)  # damaged chunks of a complete stage (integrity.Damage)

    @property
    def todo(self) -> int:
        return sum(len(u) for u in self.units)

    @property
    def done(self) -> int:
        return self.total - self.todo


@dataclass
class Context:
    """What passes between the stages of one run, and the run's hooks."""

    reference: Any = None  # clean volume (array or .npy path) for the report's PSNR/SSIM
    checkpoint: str | None = None  # the train stage's checkpoint (None: model/best.pt)
    on_epoch: Callable | None = None  # the train stage's progress hook (UI)
    layout: Layout | None = None  # the store's sizes when planning before it exists (check)
    metrics: dict[str, Any] | None = None  # the report's figures
    preview: Path | None = None  # the centre preview written after ingest
    sinograms: Any = None  # (raw scan, sinograms) read by ingest's plan, written by its run

    def portable(self) -> "Context":
        """What a unit needs in another process: the checkpoint only."""
        return Context(checkpoint=self.checkpoint)


class Stage:
    """The contract (see the module docstring); a stage overrides what it needs."""

    key: str = ""
    chunked: bool = False  # units may run in parallel, on any worker
    task_name: str = ""  # the name of a unit's task in the Prefect UI
    retries: int = 0  # how often an executor may try a failed unit again, when the failure may pass
    chunks_name: str = ""  # what its chunks are called on a progress display

    def plan(self, store: ScanStore, cfg: RunConfig, ctx: Context) -> Plan:
        raise NotImplementedError

    def start(self, store: ScanStore, cfg: RunConfig, plan: Plan, ctx: Context) -> None:
        pass

    def run(self, store: ScanStore, cfg: RunConfig, unit: Any, ctx: Context) -> int:
        raise NotImplementedError

    def finish(self, store: ScanStore, cfg: RunConfig, plan: Plan, ctx: Context, seconds: float) -> None:
        pass

    def after(self, store: ScanStore, cfg: RunConfig, ctx: Context) -> None:
        pass

    def refuse(self, store: ScanStore, cfg: RunConfig, layout: Layout, ctx: Context) -> None:
        """Refuse, from the sizes alone, what this stage could not do (:func:`refuse_all`)."""


def refuse_all(store: ScanStore, cfg: RunConfig, layout: Layout, ctx: Context) -> None:
    """Every stage's :meth:`Stage.refuse`: run by ingest once the scan is read, before anything
    is written, and by ``tomodenoise check``."""
    for stage in STAGES:
        stage.refuse(store, cfg, layout, ctx)


def store_bytes(layout: Layout, k: int) -> int:
    """About how many bytes a run's store takes: the sinogram, the K split reconstructions and the
    denoised volume, float32 (uncompressed; Zstd saves little on noisy data)."""
    n = layout.time * layout.channel * layout.z
    return 4 * n * (layout.angle * layout.det + (k + 1) * layout.n_pixels**2)


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


class Ingest(Stage):
    key, task_name, retries = "ingest", "ingest", 1

    def plan(self, store, cfg, ctx):
        from .ingestion import refuse_clash

        if not cfg.input.path:
            raise ValueError("input.path is not set: give the scan to denoise")
        identity = input_identity(cfg.input.path)
        if stage_current(store, "ingest", stage_keys(cfg, identity)["ingest"]):
            return Plan("ingest", current=True)
        refuse_clash(store, cfg, identity)
        if ctx.sinograms is None:  # the scan read and checked here, so a run refuses bad input before it writes
            from .ingestion import read_sinograms

            ctx.sinograms = read_sinograms(cfg)
            refuse_all(store, cfg, Layout.of_sinograms(ctx.sinograms[1].sinogram, cfg), ctx)
        return Plan("ingest", [Whole("ingest")])

    def run(self, store, cfg, unit, ctx):
        from .ingestion import ingest

        prepared, ctx.sinograms = ctx.sinograms, None  # the store holds them from here on
        ingest(cfg, prepared=prepared)
        return 1

    def refuse(self, store, cfg, layout, ctx):
        """A disk without room for the store."""
        root = Path(cfg.output.root).expanduser().resolve()
        while not root.exists() and root != root.parent:
            root = root.parent
        held = sum(f.stat().st_size for f in store.root.rglob("*") if f.is_file()) if store.root.exists() else 0
        need, free = store_bytes(layout, cfg.splits.k) - held, shutil.disk_usage(root).free
        if need > free:
            raise ValueError(f"the store of this scan needs about {_size(need)} more and {root} has {_size(free)} "
                             "free: free some space or set output.root to a larger disk")

    def after(self, store, cfg, ctx):
        from ..preview import store_preview

        ctx.preview = store_preview(store, cfg)  # check the centre before the long work


class Chunked(Stage):
    """A stage whose output is chunks of one store array, cut into units that may run anywhere:
    ``work`` lists the units for the chunks still to do, ``begin`` makes the output ready.

    A complete stage is verified before it is skipped (:mod:`.integrity`): chunks that are
    missing, unreadable or not as written are computed again, and only they."""

    chunked, retries = True, 2
    array = ""  # the store array its chunks are written to

    def chunks(self, layout: Layout, cfg: RunConfig) -> list[Any]:
        raise NotImplementedError

    def damaged(self, store: ScanStore, cfg: RunConfig, key: str | None = None) -> list[Any]:
        """The chunks of the stage that are not as they were written (:class:`.integrity.Damage`)."""
        from .integrity import damaged_chunks

        markers = Markers(store, self.key, key or key_for(store, cfg, self.key))
        return damaged_chunks(store, markers, self.chunks(Layout.of_store(store), cfg), self.array)

    def plan(self, store, cfg, ctx):
        layout = ctx.layout or Layout.of_store(store)
        if store.exists() and stage_current(store, self.key, key_for(store, cfg, self.key)):
            bad = self.damaged(store, cfg)
            if not bad:
                return Plan(self.key, current=True)
            plan = self.work(store, cfg, ctx, layout, [d.chunk for d in bad])
            plan.repair = bad
            return plan
        return self.work(store, cfg, ctx, layout)

    def work(self, store: ScanStore, cfg: RunConfig, ctx: Context, layout: Layout,
             chunks: list[Any] | None = None) -> Plan:
        raise NotImplementedError

    def start(self, store, cfg, plan, ctx):
        if plan.repair:
            where = ", ".join(str(d) for d in plan.repair[:3]) + (", ..." if len(plan.repair) > 3 else "")
            log.warning("%s: %d of %d chunks in the store are damaged or missing (%s): computing them again",
                        self.key, len(plan.repair), plan.total, where)
            Markers(store, self.key, key_for(store, cfg, self.key)).forget([d.chunk.marker for d in plan.repair])
            store.clear_stage(self.key)
        self.begin(store, cfg, ctx)
        if plan.done and not plan.repair:
            log.info("%s: %d chunks already written, %d to compute", self.key, plan.done, plan.todo)

    def begin(self, store: ScanStore, cfg: RunConfig, ctx: Context) -> None:
        raise NotImplementedError


class Reconstruct(Chunked):
    key, task_name, chunks_name, array = "reconstruct", "reconstruct-group", "reconstruction chunks", "recon"

    def chunks(self, layout, cfg):
        from .reconstruction import recon_chunks

        return recon_chunks(layout, cfg)

    def work(self, store, cfg, ctx, layout, chunks=None):
        from .reconstruction import chunk_bytes, recon_groups, todo_chunks

        todo = todo_chunks(store, cfg, layout) if chunks is None else chunks
        return Plan(self.key, recon_groups(layout, cfg, todo), total=len(self.chunks(layout, cfg)),
                    unit_bytes=2 * chunk_bytes(layout))

    def begin(self, store, cfg, ctx):
        from .reconstruction import start_reconstruct

        start_reconstruct(store, cfg)

    def run(self, store, cfg, unit, ctx):
        from .reconstruction import reconstruct_group

        return len(reconstruct_group(store, cfg, unit))

    def finish(self, store, cfg, plan, ctx, seconds):
        from .reconstruction import finish_reconstruct

        finish_reconstruct(store, cfg, seconds)


class Train(Stage):
    key, task_name = "train", "train"

    def plan(self, store, cfg, ctx):
        from ..train.launch import resolve_ranks

        from .integrity import readable_checkpoint

        if store.exists() and stage_current(store, "train", key_for(store, cfg, "train")) \
                and readable_checkpoint(store.model_dir / "best.pt") is None:
            return Plan(self.key, current=True)  # trained: the device and ranks of this machine do not matter
        resolve_ranks(cfg.train.ranks, cfg.train.device)  # refuses ranks the machine cannot run
        return Plan(self.key, [Whole(self.key)])

    def start(self, store, cfg, plan, ctx):
        """A lost or unreadable checkpoint is never a dead end: a finished training's
        ``model/last.pt`` becomes the model; an unreadable ``last.pt`` is dropped (the training
        starts again)."""
        from .integrity import readable_checkpoint

        best, last = store.model_dir / "best.pt", store.model_dir / "last.pt"
        if last.exists() and readable_checkpoint(last):
            log.warning("model/last.pt is %s: training again from the start", readable_checkpoint(last))
            last.unlink()
        finished = store.stage_done("train") and store.stage_info("train").get("key") == key_for(store, cfg, "train")
        if finished and last.exists():
            log.warning("model/best.pt is %s: the finished training's last checkpoint (model/last.pt) becomes the "
                        "model", readable_checkpoint(best))
            shutil.copyfile(last, best)
        elif best.exists() and readable_checkpoint(best):
            best.unlink()

    def run(self, store, cfg, unit, ctx):
        from .training import train

        ctx.checkpoint = str(train(store, cfg, on_epoch=ctx.on_epoch))
        return 1


class Denoise(Chunked):
    key, task_name, chunks_name, array = "denoise", "denoise-shard", "denoised chunks", "denoised"

    def chunks(self, layout, cfg):
        from .inference import denoise_chunks

        return denoise_chunks(layout)

    def work(self, store, cfg, ctx, layout, chunks=None):
        from .inference import denoise_shards, shard_unit_bytes, todo_denoise

        todo = todo_denoise(store, cfg, ctx.checkpoint, layout) if chunks is None else chunks
        return Plan(self.key, denoise_shards(layout, cfg, todo), total=len(self.chunks(layout, cfg)),
                    unit_bytes=shard_unit_bytes(layout, cfg))

    def begin(self, store, cfg, ctx):
        from .inference import start_denoise

        start_denoise(store, cfg, ctx.checkpoint)

    def run(self, store, cfg, unit, ctx):
        from .inference import denoise_shard

        return len(denoise_shard(store, cfg, unit, ctx.checkpoint))

    def finish(self, store, cfg, plan, ctx, seconds):
        from .inference import finish_denoise

        finish_denoise(store, cfg, seconds)


class Report(Stage):
    key, task_name = "report", "report"

    def plan(self, store, cfg, ctx):
        return Plan(self.key, [Whole(self.key)])  # always written anew: cheap, and the log grows

    def refuse(self, store, cfg, layout, ctx):
        """A reference volume that does not match the denoised volume."""
        from .reporting import reference_shape

        ref = ctx.reference
        if ref is None:
            return
        shape = np.load(ref, mmap_mode="r").shape if isinstance(ref, (str, Path)) else np.shape(ref)
        try:
            reference_shape(shape, (layout.time, layout.channel, layout.z), (layout.n_pixels, layout.n_pixels))
        except ValueError as exc:
            raise ValueError(f"the reference {ref}: {exc}" if isinstance(ref, (str, Path)) else str(exc)) from None

    def run(self, store, cfg, unit, ctx):
        from .reporting import report

        ref = ctx.reference
        ctx.metrics = report(store, cfg, reference=np.load(ref) if isinstance(ref, (str, Path)) else ref)
        return 1

    def after(self, store, cfg, ctx):
        if cfg.output.export:  # after the report: a failed export leaves the report and its artifacts
            from ..export import export

            export(store.root, cfg.output.export)


INGEST, RECONSTRUCT, TRAIN, DENOISE, REPORT = Ingest(), Reconstruct(), Train(), Denoise(), Report()
_BY_KEY = {s.key: s for s in (INGEST, RECONSTRUCT, TRAIN, DENOISE, REPORT)}
STAGES: tuple[Stage, ...] = tuple(_BY_KEY[key] for key in ORDER)  # the order of :data:`~.keys.ORDER`


def stage_named(key: str) -> Stage:
    """The stage of :data:`STAGES` with this key."""
    if key in _BY_KEY:
        return _BY_KEY[key]
    raise KeyError(f"no stage {key!r}; the stages are {', '.join(s.key for s in STAGES)}")

