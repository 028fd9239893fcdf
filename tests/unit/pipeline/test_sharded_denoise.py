"""The denoise stage in shards: sizing, bitwise equality with one process, resume, one load."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tomodenoise import pipeline
from tomodenoise.config import ModelConfig, RunConfig
from tomodenoise.io.store import ScanStore
from tomodenoise.pipeline import Context, inference
from tomodenoise.pipeline.stages import DENOISE
from tomodenoise.simulate.scan import simulate_foam_scan

N_CHUNKS = 3  # 6 slices in slabs of 2


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A store with recon and a checkpoint (no denoise yet) and its configuration."""
    d = tmp_path_factory.mktemp("sharded")
    scan = simulate_foam_scan(d / "foam.h5", size=24, n_angles=32, n_slices=6, i0=200.0, seed=4, n_spheres=40)["scan"]
    cfg = RunConfig()
    cfg.input.path = str(scan)
    cfg.output.root = str(d / "out")
    cfg.recon.z_chunk = 2
    cfg.model = ModelConfig(name="msd", params={"depth": 3, "width": 1})
    cfg.train.epochs, cfg.train.patch_size, cfg.train.progress, cfg.train.neighbours = 1, 16, False, 1
    cfg.train.patches_per_slice = 1  # a few steps an epoch (not the recipe's ~100)
    cfg.compute.n_workers, cfg.compute.tasks_per_worker = 2, 1
    cfg.output.previews = 0
    store = pipeline.ingest(cfg)
    pipeline.reconstruct(store, cfg, progress=False)
    pipeline.train(store, cfg)
    _randomise_weights(store.model_dir / "best.pt")
    return store, cfg


def _randomise_weights(checkpoint) -> None:
    """Random weights everywhere (a briefly trained MS-D still has a near-zero output layer, which
    would hide differences in the last bits)."""
    import torch

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    gen = torch.Generator().manual_seed(0)
    for v in ckpt["state_dict"].values():
        if v.is_floating_point():
            v.copy_(torch.randn(v.shape, generator=gen) * 0.2)
    torch.save(ckpt, checkpoint)


def _fresh(store: ScanStore, tmp_path):
    """A copy of the store without any denoise output (each test starts from the same state)."""
    import shutil

    dst = tmp_path / store.root.name
    shutil.copytree(store.root, dst)
    copy = ScanStore(dst)
    if (dst / "progress").exists():
        for p in (dst / "progress").glob("denoise-*"):
            shutil.rmtree(p)
    copy.clear_stage("denoise", "report")
    return copy


def _markers(store):
    return {p.name: p.stat().st_mtime_ns for p in (store.root / "progress").glob("denoise-*/*.done")}


def test_shards_are_sized_by_work_and_cover_every_chunk_once(trained, tmp_path):
    store, cfg = trained
    store = _fresh(store, tmp_path)
    shards = pipeline.start_stage(DENOISE, store, cfg).units
    # 3 chunks over 2 workers x 1 task each: shards of 2 chunks
    assert [len(s.chunks) for s in shards] == [2, 1]
    assert [c for s in shards for c in s.chunks] == pipeline.denoise_chunks(store)
    assert shards[0].name == "denoise-t0-c0-z0..t0-c0-z2" and shards[1].name == "denoise-t0-c0-z4"
    # the memory bound cuts shards smaller: one chunk's data is 4 x 24 x 24 x (4 splits x 4 images + 2)
    assert inference.shard_unit_bytes(store, cfg) == 4 * 24 * 24 * (4 * 4 + 2)
    small = cfg.model_copy(deep=True)
    small.compute.task_memory = str(inference.shard_unit_bytes(store, cfg))
    assert [len(s.chunks) for s in pipeline.start_stage(DENOISE, store, small).units] == [1, 1, 1]
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        pipeline.start_stage(DENOISE, store, cfg, Context(checkpoint=str(tmp_path / "nope.pt")))


def test_shards_in_any_order_equal_the_single_process_stage_bitwise(trained, tmp_path):
    store, cfg = trained
    one = _fresh(store, tmp_path / "one")
    pipeline.denoise(one, cfg)
    assert one.stage_done("denoise") and one.stage_info("denoise")["chunks"] == N_CHUNKS
    expected = np.asarray(one.array("denoised")[:])
    assert np.isfinite(expected).all() and expected.std() > 0
    # the slab-wise result is the whole-volume inference (the halo feeds the neighbour channels)
    from tomodenoise.denoise import denoise_checkpoint

    whole = denoise_checkpoint(one.model_dir / "best.pt", np.asarray(one.array("recon")[:, 0, 0]), device="cpu")
    np.testing.assert_allclose(expected[0, 0], whole, rtol=1e-5, atol=1e-6)

    two = _fresh(store, tmp_path / "two")
    shards = pipeline.start_stage(DENOISE, two, cfg).units
    for shard in reversed(shards):
        pipeline.denoise_shard(two, cfg, shard)
    pipeline.finish_denoise(two, cfg, 0.0)
    np.testing.assert_array_equal(np.asarray(two.array("denoised")[:]), expected)


def test_a_killed_run_resumes_only_the_chunks_without_markers(trained, tmp_path, monkeypatch):
    store, cfg = trained
    ref = _fresh(store, tmp_path / "ref")
    pipeline.denoise(ref, cfg)
    expected = np.asarray(ref.array("denoised")[:])

    store = _fresh(store, tmp_path / "run")
    from tomodenoise.pipeline.inference import block

    calls = {"n": 0}
    real = block.denoise_block

    def dying(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        return real(*a, **kw)

    monkeypatch.setattr(block, "denoise_block", dying)
    with pytest.raises(KeyboardInterrupt):
        pipeline.denoise(store, cfg)
    before = _markers(store)
    assert len(before) == 1 and not store.stage_done("denoise")
    with pytest.raises(RuntimeError, match="incomplete"):
        pipeline.finish_denoise(store, cfg)

    calls["n"] = -100  # no more kills; count the chunks computed
    pipeline.denoise(store, cfg)
    assert calls["n"] == -100 + N_CHUNKS - 1  # only the two chunks without a marker
    after = _markers(store)
    assert len(after) == N_CHUNKS and {k: after[k] for k in before} == before
    np.testing.assert_array_equal(np.asarray(store.array("denoised")[:]), expected)
    # complete and current: a rerun does nothing
    pipeline.denoise(store, cfg)
    assert calls["n"] == -100 + N_CHUNKS - 1


def test_other_inference_settings_forget_the_markers(trained, tmp_path):
    store, cfg = trained
    store = _fresh(store, tmp_path)
    shards = pipeline.start_stage(DENOISE, store, cfg).units
    pipeline.denoise_shard(store, cfg, shards[0])
    assert len(pipeline.start_stage(DENOISE, store, cfg).units) == 1  # resumes: only the second shard
    tiled = cfg.model_copy(deep=True)
    tiled.inference.tile, tiled.inference.tile_overlap = 16, 8
    again = pipeline.start_stage(DENOISE, store, tiled).units
    assert sum(len(s.chunks) for s in again) == N_CHUNKS and not _markers(store)


def test_each_process_loads_the_network_once(trained, tmp_path):
    store, cfg = trained
    store = _fresh(store, tmp_path)
    inference.clear_model_cache()
    n0 = inference.model_loads()
    small = cfg.model_copy(deep=True)
    small.compute.task_memory = "1"  # one chunk per shard: three shards
    pipeline.denoise(store, small)
    assert inference.model_loads() == n0 + 1
    records = [json.loads(p.read_text()) for p in (store.root / "progress").glob("denoise-*/*.done")]
    assert len(records) == N_CHUNKS and len({r["shard"] for r in records}) == N_CHUNKS
    assert {r["model_loads"] for r in records} == {n0 + 1} and {r["device"] for r in records} == {"cpu"}
    # a rewritten checkpoint (new mtime) is loaded again
    ckpt = store.model_dir / "best.pt"
    import os

    st = ckpt.stat()
    os.utime(ckpt, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    inference.cached_model(ckpt, "cpu")
    assert inference.model_loads() == n0 + 2


def test_the_bytes_do_not_depend_on_the_threads_of_the_process(trained, tmp_path):
    """A Dask worker runs PyTorch with compute.threads_per_worker threads; the single-process stage
    must too, or its matrix products (and so its bytes) differ."""
    import torch

    store, cfg = trained
    before = torch.get_num_threads()
    results = []
    try:
        for n in (2, 1):
            torch.set_num_threads(n)
            s = _fresh(store, tmp_path / f"threads{n}")
            pipeline.denoise(s, cfg)
            assert torch.get_num_threads() == n  # restored
            results.append(np.asarray(s.array("denoised")[:]))
        with inference.cpu_threads(1, "cpu"):
            assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(results[0], results[1])
