"""The core pipeline's bookkeeping: stage keys, skipping, invalidation, clashes, resume."""

import os
import shutil

import numpy as np
import pytest

from tomodenoise import pipeline
from tomodenoise.config import ModelConfig, RunConfig
from tomodenoise.simulate.scan import simulate_foam_scan


@pytest.fixture(scope="module")
def tiny_scan(tmp_path_factory):
    d = tmp_path_factory.mktemp("scan")
    return simulate_foam_scan(d / "foam.h5", size=24, n_angles=32, n_slices=2, i0=200.0, seed=2, n_spheres=40)


def _cfg(scan, out, **train):
    cfg = RunConfig()
    cfg.input.path = str(scan)
    cfg.output.root = str(out)
    cfg.recon.z_chunk = 2
    cfg.model = ModelConfig(name="msd", params={"depth": 3, "width": 1})
    cfg.train.epochs = train.get("epochs", 2)
    cfg.train.patch_size = 16
    cfg.train.patches_per_slice = 1  # a few steps an epoch (not the recipe's ~100)
    cfg.train.progress = False
    cfg.output.previews = 0
    return cfg


def _finished(store):
    return {s: v.get("finished") + v.get("key", "") for s, v in store.attrs["stages"].items()}


def test_stage_keys_follow_what_changes_each_stage(tiny_scan, tmp_path):
    cfg = _cfg(tiny_scan["scan"], tmp_path)
    base = pipeline.stage_keys(cfg)

    def changed(**sections):
        c = cfg.model_copy(deep=True)
        for dotted, value in sections.items():
            section, field = dotted.split("__")
            setattr(getattr(c, section), field, value)
        new = pipeline.stage_keys(c)
        return [s for s in base if new[s] != base[s]]

    assert changed(train__progress=True, train__device="cpu", recon__use_gpu="no") == []
    assert changed(train__epochs=3) == ["train", "denoise"]
    assert changed(splits__k=3) == ["reconstruct", "train", "denoise"]
    assert changed(recon__filter="hann") == ["reconstruct", "train", "denoise"]
    assert changed(preprocess__center=11.0) == ["ingest", "reconstruct", "train", "denoise"]
    # the input's identity: a rewritten file (new mtime) reruns everything
    before = pipeline.input_identity(cfg.input.path)
    st = os.stat(cfg.input.path)
    os.utime(cfg.input.path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    after = pipeline.input_identity(cfg.input.path)
    assert before["digest"] != after["digest"]
    assert all(pipeline.stage_keys(cfg, after)[s] != base[s] for s in base)


def test_rerun_skips_unchanged_stages_and_redoes_changed_ones(tiny_scan, tmp_path):
    cfg = _cfg(tiny_scan["scan"], tmp_path)
    store = pipeline.run(cfg, progress=False)
    first = _finished(store)
    assert set(first) == {"ingest", "reconstruct", "train", "denoise", "report"}
    assert (store.model_dir / "best.pt").exists()

    # Only the training setting changes: ingest and reconstruction are kept, training reruns.
    cfg2 = _cfg(tiny_scan["scan"], tmp_path, epochs=3)
    store = pipeline.run(cfg2, progress=False)
    second = _finished(store)
    assert second["ingest"] == first["ingest"] and second["reconstruct"] == first["reconstruct"]
    assert second["train"] != first["train"] and second["denoise"] != first["denoise"]
    assert store.stage_info("train")["epochs"] == 3

    # A trained store moved to a machine without the GPU it asks for: nothing to train, no refusal.
    on_cpu = cfg2.model_copy(deep=True)
    on_cpu.train.device = "cuda"  # not part of the key; ranks are (they change the training)
    assert pipeline.stage_named("train").plan(store, on_cpu, pipeline.Context()).current

    # A different K: the split reconstructions are redone with the new shape.
    cfg3 = cfg2.model_copy(deep=True)
    cfg3.splits.k = 2
    store = pipeline.run(cfg3, progress=False)
    assert store.open().sizes["split"] == 2
    assert _finished(store)["ingest"] == first["ingest"]
    assert _finished(store)["reconstruct"] != first["reconstruct"]


def test_same_scan_id_from_another_source_is_refused(tiny_scan, tmp_path):
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = other_dir / "foam.h5"  # same file name, so the same scan id
    shutil.copy(tiny_scan["scan"], other)
    out = tmp_path / "out"
    store = pipeline.ingest(_cfg(tiny_scan["scan"], out))
    before = store.attrs["stages"]["ingest"]
    with pytest.raises(FileExistsError, match="scan_id"):
        pipeline.ingest(_cfg(other, out))
    assert store.attrs["stages"]["ingest"] == before  # nothing was written
    cfg = _cfg(other, out)
    cfg.output.overwrite = True
    assert pipeline.ingest(cfg).attrs["source_identity"]["path"] == str(other.resolve())


def test_more_splits_than_angles_is_refused_before_writing(tiny_scan, tmp_path):
    cfg = _cfg(tiny_scan["scan"], tmp_path)
    cfg.splits.k = 33  # the scan has 32 angles
    with pytest.raises(ValueError, match="32 projection angles"):
        pipeline.ingest(cfg)
    assert not any(tmp_path.iterdir())


def test_interrupted_training_resumes_from_last_checkpoint(tiny_scan, tmp_path, monkeypatch):
    cfg = _cfg(tiny_scan["scan"], tmp_path)
    store = pipeline.ingest(cfg)
    pipeline.reconstruct(store, cfg, progress=False)
    pipeline.train(store, cfg)
    store.clear_stage("train")  # as if the run died after last.pt was written

    seen = {}

    def fake_train(splits, tcfg, mcfg, out_dir, run_config=None, on_epoch=None, **kw):
        seen["resume"] = tcfg.resume
        raise RuntimeError("stop here")

    monkeypatch.setattr("tomodenoise.train.train_n2i", fake_train)
    with pytest.raises(RuntimeError, match="stop here"):
        pipeline.train(store, cfg)
    assert seen["resume"] == str(store.model_dir / "last.pt")

    # With other training settings, the old checkpoints are not resumed from.
    cfg2 = _cfg(tiny_scan["scan"], tmp_path, epochs=4)
    with pytest.raises(RuntimeError, match="stop here"):
        pipeline.train(store, cfg2)
    assert seen["resume"] is None
    assert not (store.model_dir / "last.pt").exists()


@pytest.mark.parametrize("scan_id, expected", [("../../etc", "_.._etc"), ("a b/c", "a_b_c"), ("...", "scan"),
                                                ("tooth-2024_01.v2", "tooth-2024_01.v2")])
def test_scan_id_is_a_safe_folder_name(scan_id, expected):
    cfg = RunConfig()
    cfg.input.scan_id = scan_id
    assert pipeline.scan_id_for(cfg) == expected


def test_reconstruct_fills_every_split_and_slice(tiny_scan, tmp_path):
    cfg = _cfg(tiny_scan["scan"], tmp_path)
    store = pipeline.ingest(cfg)
    pipeline.reconstruct(store, cfg, progress=False)
    splits = pipeline.load_splits(store)
    assert splits.shape == (4, 2, 24, 24) and np.isfinite(splits).all()
    assert all(np.abs(s).max() > 0 for s in splits.reshape(-1, 24, 24))  # no chunk left at its zero fill
