"""The pipeline flow with ``train.ranks: 2``: DDP training between the Dask stages."""

import psutil
import pytest

from tomodenoise import pipeline
from tomodenoise.pipeline import training
from tomodenoise.config import ModelConfig, RunConfig
from tomodenoise.simulate.scan import simulate_foam_scan


@pytest.fixture(scope="module")
def tiny_scan(tmp_path_factory):
    d = tmp_path_factory.mktemp("scan")
    return simulate_foam_scan(d / "foam.h5", size=24, n_angles=32, n_slices=2, i0=200.0, seed=4, n_spheres=40)


def test_the_flow_trains_with_two_ranks_after_the_dask_workers_are_gone(tiny_scan, tmp_path, monkeypatch):
    from flows.pipeline import pipeline_flow

    cfg = RunConfig()
    cfg.input.path = str(tiny_scan["scan"])
    cfg.output.root = str(tmp_path)
    cfg.recon.z_chunk = 2
    cfg.model = ModelConfig(name="msd", params={"depth": 3, "width": 1})
    cfg.train.epochs = 2
    cfg.train.patch_size = 16
    cfg.train.patches_per_slice = 1  # a few steps an epoch (not the recipe's ~100)
    cfg.train.progress = False
    cfg.train.ranks = 2
    cfg.train.device = "cpu"
    cfg.compute.n_workers = 2
    cfg.output.previews = 0
    seen = {}
    real = training.train_ranks

    def spy(store, cfg_, ranks, backend, on_epoch=None):
        # the reconstruction's Dask workers (spawned processes) must have released the machine
        seen["children"] = [" ".join(p.cmdline()) for p in psutil.Process().children(recursive=True)
                            if "spawn_main" in " ".join(p.cmdline())]
        seen["ranks"] = ranks
        return real(store, cfg_, ranks, backend, on_epoch=on_epoch)

    monkeypatch.setattr(training, "train_ranks", spy)
    state = pipeline_flow(config=cfg, return_state=True)
    assert state.is_completed(), state
    assert seen["ranks"] == 2 and seen["children"] == []
    store = pipeline.store_for(cfg)
    assert store.stage_info("train")["ranks"] == 2
    assert store.stage_done("denoise") and store.stage_done("report")
