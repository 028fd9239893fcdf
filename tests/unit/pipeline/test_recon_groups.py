"""Reconstruction tasks sized by work: chunk groups, their memory bound, reuse and resume."""

from __future__ import annotations

import logging
import tracemalloc

import numpy as np
import pytest

from tomodenoise import pipeline
from tomodenoise.config import RunConfig
from tomodenoise.io.store import ScanStore
from tomodenoise.pipeline.reconstruction import (
    ChunkGroup,
    chunk_bytes,
    recon_groups,
    reconstruct_group,
)
from tomodenoise.pipeline.sizing import parse_bytes
from tomodenoise.pipeline.stages import RECONSTRUCT
from tomodenoise.recon import fbp
from tomodenoise.simulate.scan import simulate_foam_scan
from tomodenoise.splits import split_indices


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    d = tmp_path_factory.mktemp("groups-scan")
    return simulate_foam_scan(d / "foam.h5", size=128, n_angles=128, n_slices=16, i0=500.0, seed=4,
                              n_spheres=60)["scan"]


def _cfg(scan, out, k=2, z_chunk=4, workers=2, per_worker=3, memory="2GiB") -> RunConfig:
    cfg = RunConfig()
    cfg.input.path = str(scan)
    cfg.output.root = str(out)
    cfg.splits.k = k
    cfg.recon.z_chunk = z_chunk
    cfg.compute.n_workers = workers
    cfg.compute.tasks_per_worker = per_worker
    cfg.compute.task_memory = memory
    return cfg


def _reference(store: ScanStore, cfg: RunConfig, chunk) -> np.ndarray:
    """What the old one-chunk-per-task path computed: ``fbp`` of the chunk's split."""
    geom = store.attrs["geometry"]
    angles = store.angles_of(chunk.time)
    sino = store.array("sinogram")[chunk.time, chunk.channel, chunk.z_start:chunk.z_stop, :len(angles)]
    idx = split_indices(len(angles), cfg.splits.k)[chunk.split]
    return fbp(sino[:, idx], angles[idx], filter=cfg.recon.filter, center=geom["center"],
               n_pixels=geom["n_pixels"], use_gpu=cfg.recon.use_gpu)


def test_groups_cover_every_chunk_once_with_a_slab_splits_side_by_side(scan, tmp_path):
    cfg = _cfg(scan, tmp_path, k=4, z_chunk=2)  # 4 splits x 8 slabs = 32 chunks, 2 workers x 3 tasks
    store = pipeline.ingest(cfg)
    chunks = pipeline.recon_chunks(store, cfg)
    assert len(chunks) == 32
    assert [c.split for c in chunks[:4]] == [0, 1, 2, 3] and len({c.z_start for c in chunks[:4]}) == 1
    groups = pipeline.start_stage(RECONSTRUCT, store, cfg).units
    assert len(groups) == 6 and [len(g) for g in groups] == [6, 6, 6, 6, 6, 2]
    assert [c for g in groups for c in g.chunks] == chunks  # every chunk once, in order
    assert groups[0].name == "recon-t0-c0-z0-s0..t0-c0-z2-s1"
    assert ChunkGroup((chunks[5],)).name == "recon-t0-c0-z2-s1"
    # one task per worker when asked, never fewer than one chunk per task
    assert len(recon_groups(store, _cfg(scan, tmp_path, k=4, z_chunk=2, per_worker=1), chunks)) == 2
    assert len(recon_groups(store, _cfg(scan, tmp_path, k=4, z_chunk=2, workers=64), chunks)) == 32
    assert recon_groups(store, cfg, []) == []


def test_a_volume_twice_the_task_memory_streams_through_bounded_groups(scan, tmp_path):
    probe = _cfg(scan, tmp_path)
    store = pipeline.ingest(probe)
    sino, n = store.array("sinogram"), int(store.attrs["geometry"]["n_pixels"])
    k = probe.splits.k
    volume = 4 * (int(np.prod(sino.shape)) + k * int(np.prod(sino.shape[:3])) * n * n)  # sinogram + recon
    limit = volume // 2
    cfg = _cfg(scan, tmp_path, workers=1, per_worker=1, memory=str(limit))  # by count: one task for all
    groups = pipeline.start_stage(RECONSTRUCT, store, cfg).units
    unit = chunk_bytes(store)
    assert unit == 4 * 4 * (128 * 128 + 128 * 128)
    assert len(groups) >= 2  # the memory bound, not the task count, cut the work
    for g in groups:
        assert g.nbytes == unit * len(g) <= limit
    # what a task really holds stays under its budget, and does not grow with the group: one
    # chunk's slabs and their codec copies at a time (numpy and zarr buffers are traced; ASTRA's
    # own one-slice buffers are not)
    tracemalloc.start()
    try:
        for g in groups:
            tracemalloc.reset_peak()
            reconstruct_group(store, cfg, g)
            _, peak = tracemalloc.get_traced_memory()
            assert peak <= min(limit, 3 * unit), (peak, limit, unit, len(g))
    finally:
        tracemalloc.stop()
    pipeline.finish_reconstruct(store, cfg)
    rec = store.array("recon")
    for c in pipeline.recon_chunks(store, cfg):
        np.testing.assert_array_equal(rec[c.region], _reference(store, cfg, c))


def test_a_chunk_over_the_task_memory_is_one_task_with_a_warning(scan, tmp_path, caplog):
    cfg = _cfg(scan, tmp_path, memory="64KiB")
    store = pipeline.ingest(cfg)
    with caplog.at_level(logging.WARNING, logger="tomodenoise.pipeline.reconstruction.chunks"):
        groups = recon_groups(store, cfg, pipeline.recon_chunks(store, cfg))
    assert all(len(g) == 1 for g in groups) and len(groups) == 8
    assert "compute.task_memory" in caplog.text
    with pytest.raises(ValueError, match="memory size"):
        parse_bytes("lots")


def test_sequential_reconstruct_equals_per_chunk_fbp_and_resumes_per_chunk(scan, tmp_path):
    cfg = _cfg(scan, tmp_path, workers=1, per_worker=2)
    store = pipeline.ingest(cfg)
    seen = []
    pipeline.reconstruct(store, cfg, progress=False)
    assert store.stage_done("reconstruct") and store.stage_info("reconstruct")["chunks"] == 8
    rec = np.asarray(store.array("recon")[:])
    for c in pipeline.recon_chunks(store, cfg):
        np.testing.assert_array_equal(rec[c.region], _reference(store, cfg, c))
    # a lost marker: only that chunk is planned again, in a group of its own
    pdir = next((store.root / "progress").glob("reconstruct-*"))
    markers = {p.name: p.stat().st_mtime_ns for p in pdir.glob("*.done")}
    (pdir / "s1-t0-c0-z4.done").unlink()
    store.clear_stage("reconstruct")
    groups = pipeline.start_stage(RECONSTRUCT, store, cfg).units
    assert [g.chunks for g in groups] == [(pipeline.Chunk(1, 0, 0, 4, 8),)]
    # a retried task redoes only its chunks without a marker
    whole = ChunkGroup(tuple(pipeline.recon_chunks(store, cfg)))
    reconstruct_group(store, cfg, whole, on_chunk=seen.append)
    assert seen == [pipeline.Chunk(1, 0, 0, 4, 8)]
    after = {p.name: p.stat().st_mtime_ns for p in pdir.glob("*.done")}
    assert {k: after[k] for k in markers if k != "s1-t0-c0-z4.done"} == {k: v for k, v in markers.items()
                                                                          if k != "s1-t0-c0-z4.done"}
    np.testing.assert_array_equal(np.asarray(store.array("recon")[:]), rec)


def test_time_steps_with_their_own_angles_in_one_group(tmp_path):
    """A dynamic store: step 1 has fewer, offset angles (NaN-padded); one group spans both steps."""
    rng = np.random.default_rng(0)
    nd, na = 24, 20
    angles = np.full((2, na), np.nan)
    angles[0] = np.linspace(0, np.pi, na, endpoint=False)
    angles[1, :16] = np.linspace(0, np.pi, 16, endpoint=False) + 0.05
    sino = rng.random((2, 1, 4, na, nd)).astype(np.float32)
    sino[1, :, :, 16:] = 0.0
    store = ScanStore.create(tmp_path / "dyn", sino, angles, z_chunk=2,
                             attrs={"geometry": {"n_pixels": nd, "center": 11.25, "n_det": nd}})
    cfg = RunConfig()
    cfg.splits.k = 2
    cfg.compute.n_workers = 1
    cfg.compute.tasks_per_worker = 1
    groups = pipeline.start_stage(RECONSTRUCT, store, cfg).units
    assert len(groups) == 1 and len(groups[0]) == 2 * 2 * 2
    reconstruct_group(store, cfg, groups[0])
    rec = store.array("recon")
    for c in groups[0].chunks:
        np.testing.assert_array_equal(rec[c.region], _reference(store, cfg, c))
    with pytest.raises(ValueError, match="NaN or inf"):
        bad = sino.copy()
        bad[0, 0, 1, 3, 5] = np.nan
        bstore = ScanStore.create(tmp_path / "bad", bad, angles, z_chunk=2,
                                  attrs={"geometry": {"n_pixels": nd, "center": 11.25, "n_det": nd}})
        reconstruct_group(bstore, cfg, pipeline.start_stage(RECONSTRUCT, bstore, cfg).units[0])
