"""A damaged store heals: a truncated or deleted chunk, a lost checkpoint (issue 21, item 1)."""

from pathlib import Path

import numpy as np
import pytest

from tomodenoise import pipeline
from tomodenoise.cli import main
from tomodenoise.config import ModelConfig, RunConfig
from tomodenoise.pipeline.markers import Markers
from tomodenoise.simulate.scan import simulate_foam_scan


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """A complete run of a tiny scan, and what it wrote."""
    d = tmp_path_factory.mktemp("integrity")
    scan = simulate_foam_scan(d / "foam.h5", size=24, n_angles=32, n_slices=4, i0=200.0, seed=5, n_spheres=40)
    cfg = RunConfig()
    cfg.input.path, cfg.output.root = str(scan["scan"]), str(d / "out")
    cfg.recon.z_chunk = 2
    cfg.model = ModelConfig(name="msd", params={"depth": 3, "width": 1})
    cfg.train.epochs, cfg.train.patch_size, cfg.train.patches_per_slice = 2, 16, 1
    cfg.train.progress, cfg.output.previews = False, 0
    store = pipeline.run(cfg, progress=False)
    return cfg, store, {a: np.asarray(store.array(a)[:]) for a in ("recon", "denoised")}


def _chunk_files(store, array: str) -> list[Path]:
    return sorted(p for p in (store.zarr_path / array / "c").rglob("*") if p.is_file())


def test_checksums_are_recorded_and_a_sound_store_verifies(done):
    cfg, store, _ = done
    assert pipeline.verify_store(store, cfg) == {"reconstruct": [], "train": [], "denoise": []}
    records = [r for m in ("reconstruct", "denoise")
               for r in Markers(store, m, pipeline.key_for(store, cfg, m)).records()]
    assert records and all(r["crc"].startswith("crc32:") for r in records)


def test_damaged_chunks_are_found_and_computed_again(done, capsys):
    cfg, store, before = done
    recon_file, denoised_file = _chunk_files(store, "recon")[1], _chunk_files(store, "denoised")[0]
    recon_file.write_bytes(recon_file.read_bytes()[:20])  # truncated
    denoised_file.unlink()  # deleted: reads as missing values
    found = pipeline.verify_store(store, cfg)
    assert len(found["reconstruct"]) == 1 and "unreadable" in found["reconstruct"][0]
    assert len(found["denoise"]) == 1 and "changed" in found["denoise"][0]
    assert main(["verify", str(store.root)]) == 3  # damage found
    assert "reconstruct" in capsys.readouterr().out

    trained = store.stage_info("train")["finished"]
    pipeline.run(cfg, progress=False)  # heals: only the damaged chunks, nothing else
    for a in ("recon", "denoised"):
        np.testing.assert_array_equal(np.asarray(store.array(a)[:]), before[a])
    assert store.stage_info("train")["finished"] == trained
    assert pipeline.verify_store(store, cfg) == {"reconstruct": [], "train": [], "denoise": []}
    assert main(["verify", str(store.root)]) == 0


def test_a_lost_checkpoint_is_not_a_dead_end(done):
    cfg, store, _ = done
    (store.model_dir / "best.pt").unlink()
    assert pipeline.verify_store(store, cfg)["train"] == ["model/best.pt missing"]
    pipeline.run(cfg, progress=False)
    assert (store.model_dir / "best.pt").is_file()
    assert np.isfinite(np.asarray(store.array("denoised")[:])).all()


def test_an_unreadable_checkpoint_is_not_a_dead_end(done):
    cfg, store, _ = done
    (store.model_dir / "best.pt").write_bytes(b"not a checkpoint")
    assert "unreadable" in pipeline.verify_store(store, cfg)["train"][0]
    pipeline.run(cfg, progress=False)
    assert pipeline.verify_store(store, cfg)["train"] == []
