"""Neighbour slices as extra input channels (train.neighbours): dataset, batches, training, inference."""

import numpy as np
import pytest
import torch

from tomodenoise import pipeline
from tomodenoise.config import ModelConfig, RunConfig, TrainConfig
from tomodenoise.denoise import denoise, denoise_checkpoint
from tomodenoise.simulate.scan import simulate_foam_scan
from tomodenoise.train import N2IPairs, load_checkpoint, train_n2i
from tomodenoise.train.data import make_batch


def _splits(k=3, nz=5, n=12, seed=0):
    return np.random.default_rng(seed).normal(size=(k, nz, n, n)).astype(np.float32)


def test_the_input_stacks_the_neighbours_inputs_clamped_at_the_ends():
    s = _splits()
    plain, nb = N2IPairs(s), N2IPairs(s, neighbours=1)
    assert nb.in_channels == 3 and plain.in_channels == 1
    x, t = nb.pair(2, 1)
    assert x.shape == (3, 12, 12)
    for c, z in enumerate((1, 2, 3)):
        np.testing.assert_allclose(x[c], plain.pair(z, 1)[0], rtol=1e-6)
    np.testing.assert_array_equal(t, plain.pair(2, 1)[1])  # the target is the slice itself
    x0 = nb.network_input(0, 0)
    np.testing.assert_array_equal(x0[0], x0[1])  # below the first slice: the first slice again
    with pytest.raises(ValueError, match="neighbours"):
        N2IPairs(s, neighbours=-1)


def test_patches_and_the_dihedral_augmentation_treat_every_channel_alike():
    # a volume constant along z: every channel of a batch item must be the same image
    base = np.random.default_rng(1).normal(size=(3, 1, 16, 16)).astype(np.float32)
    pairs = N2IPairs(np.repeat(base, 5, axis=1), neighbours=2)
    rng = np.random.default_rng(0)
    x, t = make_batch(pairs, [(2, 0), (0, 1), (4, 2)], (8, 8), rng, True, {"mean": 0.0, "std": 1.0})
    assert x.shape == (3, 5, 8, 8) and t.shape == (3, 1, 8, 8)
    for c in range(5):
        torch.testing.assert_close(x[:, c], x[:, 2])


def test_training_and_inference_with_neighbours(tmp_path):
    s = _splits(nz=6, n=16)
    cfg = TrainConfig(epochs=2, batch_size=4, patch_size=8, patches_per_slice=1, neighbours=1, val_fraction=0.2, progress=False,
                      early_stopping=0)
    res = train_n2i(s, cfg, ModelConfig(name="unet", params={"depth": 1, "base_channels": 4}), tmp_path)
    model, meta = load_checkpoint(res.checkpoint)
    assert meta["model"]["params"]["in_channels"] == 3 and meta["train_config"]["neighbours"] == 1
    out = denoise_checkpoint(res.checkpoint, s)
    assert out.shape == s.shape[1:] and np.isfinite(out).all()
    direct = denoise(model, s, strategy="X:1", normalisation=meta["normalisation"], neighbours=1)
    np.testing.assert_allclose(out, direct, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="train.neighbours needs 3 input channels"):
        train_n2i(s, cfg, ModelConfig(name="unet", params={"depth": 1, "base_channels": 4, "in_channels": 1}),
                  tmp_path / "u")


@pytest.mark.parametrize("name,params", [("msd", {"depth": 3}), ("unet", {"depth": 1, "base_channels": 4}),
                                         ("dncnn", {"depth": 3, "features": 4, "batchnorm": False})])
def test_every_network_takes_neighbour_channels_and_gives_one(name, params, tmp_path):
    s = _splits(nz=4, n=16)
    cfg = TrainConfig(epochs=1, batch_size=4, patch_size=8, patches_per_slice=1, neighbours=2, val_fraction=0.0, progress=False,
                      early_stopping=0)
    res = train_n2i(s, cfg, ModelConfig(name=name, params=params), tmp_path)
    out = denoise_checkpoint(res.checkpoint, s)
    assert out.shape == s.shape[1:] and np.isfinite(out).all()


def test_dncnn_residual_is_the_centre_input_channel():
    import torch

    from tomodenoise.models import build_model

    m = build_model("dncnn", depth=2, features=2, batchnorm=False, in_channels=5).eval()
    for p in m.parameters():
        torch.nn.init.zeros_(p)  # the noise estimate is 0: the output is the residual's source
    x = torch.randn(2, 5, 6, 6)
    with torch.no_grad():
        np.testing.assert_array_equal(m(x).numpy(), x[:, 2:3].numpy())
    with pytest.raises(ValueError, match="even"):
        build_model("dncnn", in_channels=4)


def test_the_pipeline_denoises_slab_by_slab_with_a_halo_of_neighbours(tmp_path):
    scan = simulate_foam_scan(tmp_path / "foam.h5", size=24, n_angles=32, n_slices=5, i0=200.0, seed=2, n_spheres=40)["scan"]
    cfg = RunConfig()
    cfg.input.path = str(scan)
    cfg.output.root = str(tmp_path / "out")
    cfg.recon.z_chunk = 2  # slabs of 2 slices: the halo matters
    cfg.model = ModelConfig(name="msd", params={"depth": 3, "width": 1})
    cfg.train.epochs, cfg.train.patch_size, cfg.train.progress, cfg.train.neighbours = 1, 16, False, 2
    cfg.train.patches_per_slice = 1  # a few steps an epoch (not the recipe's ~100)
    cfg.output.previews = 0
    store = pipeline.run(cfg, progress=False)
    got = np.asarray(store.array("denoised")[0, 0])
    whole = denoise_checkpoint(store.model_dir / "best.pt", np.asarray(store.array("recon")[:, 0, 0]))
    np.testing.assert_allclose(got, whole, rtol=1e-5, atol=1e-6)


def test_denoise_of_some_slices_equals_those_of_the_whole_volume():
    import torch

    from tomodenoise.models import build_model

    s = _splits(nz=6, n=12)
    model = build_model("msd", depth=2, in_channels=3).eval()
    norm = {"mean": 0.0, "std": 1.0}
    torch.manual_seed(0)
    whole = denoise(model, s, strategy="X:1", normalisation=norm, neighbours=1)
    part = denoise(model, s, strategy="X:1", normalisation=norm, neighbours=1, slices=slice(2, 5))
    np.testing.assert_allclose(part, whole[2:5], rtol=1e-6, atol=1e-6)
