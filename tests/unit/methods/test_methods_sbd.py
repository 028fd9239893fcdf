"""Noise-level estimate, simulation-based denoising and GainTuning on tiny foam scans."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tomodenoise.config import ModelConfig
from tomodenoise.methods import gaintuning as gt_module
from tomodenoise.methods import sbd as sbd_module
from tomodenoise.methods.base import Context, Scan
from tomodenoise.methods.gaintuning import GainTuned, GainTuning, conv_targets
from tomodenoise.methods.noise_level import estimate_noise, foam_scale
from tomodenoise.methods.registry import parse_method
from tomodenoise.methods.sample import foam_scan
from tomodenoise.methods.sbd import SimulationBased, load_pretrained
from tomodenoise.metrics import psnr
from tomodenoise.models import build_model

MSD = ModelConfig(name="msd", params={"depth": 8})


@pytest.fixture(scope="module")
def scan():
    return foam_scan(0, n_slices=3, n_det=32, n_angles=96, i0=50)


@pytest.fixture(scope="module")
def pretrained(scan, tmp_path_factory):
    """One SBD run (its result and pretraining file) shared by the tests."""
    ctx = Context(seed=0, steps=80, work_dir=tmp_path_factory.mktemp("sbd"))
    cfg = SimulationBased(model=MSD, n_phantoms=3, lr=1e-2)
    return cfg.run(scan, ctx), ctx.work_dir / "sbd.pt"


def _psnr(scan, vol):
    return psnr(scan.clean, vol, data_range=float(scan.clean.max() - scan.clean.min()))


# --------------------------------------------------------------------------- noise level
@pytest.mark.parametrize("i0", [50.0, 400.0])
def test_noise_estimate_within_factor(i0):
    sc = foam_scan(3, i0=i0)
    est = estimate_noise(sc)
    assert est.i0_given == i0
    assert est.scale == pytest.approx(foam_scale(32))
    assert i0 / 1.5 < est.i0 < i0 * 1.5, est


def test_noise_estimate_plain_sinogram():
    """``scale=1``: a plain -log(I/I0) sinogram with smooth structure."""
    rng = np.random.default_rng(0)
    a, c = np.meshgrid(np.linspace(0, np.pi, 180), np.linspace(-1, 1, 64), indexing="ij")
    t = 1.5 * np.clip(1 - c**2, 0, None) + 0.3 * np.sin(a) * c
    angles = np.linspace(0, np.pi, 180)

    def i0_of(sino):
        return estimate_noise(Scan(sino[None], angles[: sino.shape[0]]), scale=1.0).i0

    for i0 in (100.0, 2000.0):
        sino = -np.log(np.maximum(rng.poisson(i0 * np.exp(-t)), 1) / i0)
        assert i0 / 1.25 < i0_of(sino) < i0 * 1.25
    assert i0_of(t) > 1e5  # no noise: only the smooth signal's tiny residual
    with pytest.raises(ValueError, match="no noise"):
        i0_of(np.ones((10, 8)))
    with pytest.raises(ValueError, match="scale must be a positive number"):
        estimate_noise(Scan(t[None], angles), scale=0.0)


# --------------------------------------------------------------------------- SBD
def test_sbd_runs_and_writes_pretraining(scan, pretrained):
    res, path = pretrained
    assert res.volume.shape == scan.shape and res.volume.dtype == np.float32
    assert path.is_file() and res.params["pretrained"] == str(path)
    assert res.info["simulated"] and res.train_seconds > 0
    assert res.info["pretrain_seconds"] == pytest.approx(res.train_seconds)
    assert scan.i0 / 1.5 < res.params["i0"] < scan.i0 * 1.5  # simulated at the estimated noise level
    assert res.info["noise"]["i0_given"] == scan.i0
    assert _psnr(scan, res.volume) > _psnr(scan, scan.fbp()) + 1.0
    model, meta = load_pretrained(path)
    assert meta["model"] == MSD.model_dump(mode="json") and meta["pretrain_seconds"] > 0


def test_sbd_reuses_pretraining_without_simulating(scan, pretrained, tmp_path, monkeypatch):
    res, path = pretrained

    def no_simulation(*a, **k):
        raise AssertionError("simulated although a pretrained network was given")

    monkeypatch.setattr(sbd_module, "simulate_pairs", no_simulation)
    again = SimulationBased(model=MSD, pretrained=str(path)).run(scan, Context(seed=5, steps=80, work_dir=tmp_path))
    assert not again.info["simulated"] and again.train_seconds == 0.0
    assert not (tmp_path / "sbd.pt").exists()
    np.testing.assert_array_equal(again.volume, res.volume)


def test_registry_parses_both():
    assert isinstance(parse_method("sbd"), SimulationBased)
    cfg = parse_method({"method": "gaintuning", "k": 3, "pretrained": "x.pt"})
    assert isinstance(cfg, GainTuning) and cfg.k == 3 and cfg.lr == pytest.approx(1e-2)


# --------------------------------------------------------------------------- GainTuning
def test_gain_wrapper_starts_as_the_base_network():
    torch.manual_seed(0)
    for base in (build_model("dncnn", depth=3, features=8), build_model("unet", depth=1, base_channels=4)):
        base.eval()
        x = torch.randn(2, 1, 16, 16)
        with torch.no_grad():
            torch.testing.assert_close(GainTuned(base)(x), base(x), rtol=0, atol=0)
        convs = [m for m in base.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        assert len(conv_targets(base)) == len(convs)


def _tune_in_place(scan, base, tmp_path, monkeypatch, steps=40):
    """Run GainTuning with ``base`` itself as the loaded network (so its tensors can be checked)."""
    monkeypatch.setattr(gt_module, "load_any_pretrained", lambda path, device: (base, {"mean": 0.5, "std": 0.5}, "sbd"))
    before = {k: v.detach().clone() for k, v in base.state_dict().items()}
    cfg = GainTuning(model=MSD, pretrained="in-memory", steps=steps)
    res = cfg.run(scan, Context(seed=0, steps=steps, work_dir=tmp_path, tune_slice=0))
    after = base.state_dict()
    assert before.keys() == after.keys()
    for k in before:  # every weight, bias and batch-norm statistic bitwise unchanged
        assert torch.equal(before[k], after[k]), k
    assert all(not p.requires_grad for p in base.parameters())
    gains = torch.load(tmp_path / "gaintuning_gains.pt", weights_only=True)["gains"]
    return res, torch.cat([g.flatten() for g in gains])


def test_gaintuning_changes_only_the_gains_msd(scan, pretrained, tmp_path, monkeypatch):
    base, _ = load_pretrained(pretrained[1])
    res, gains = _tune_in_place(scan, base, tmp_path, monkeypatch)
    n_out = sum(p.shape[0] for p in base.parameters() if p.ndim == 4)  # one output channel per MSD kernel
    assert gains.numel() == n_out == res.params["n_gains"] == 8 + 1
    assert not torch.allclose(gains, torch.ones_like(gains))
    assert res.volume.shape == scan.shape


def test_gaintuning_changes_only_the_gains_batchnorm(scan, tmp_path, monkeypatch):
    torch.manual_seed(1)
    base = build_model("dncnn", depth=3, features=8, batchnorm=True)
    res, gains = _tune_in_place(scan, base, tmp_path, monkeypatch, steps=20)
    n_out = sum(m.out_channels for m in base.modules() if isinstance(m, nn.Conv2d))
    assert gains.numel() == n_out == 8 + 8 + 1
    assert (gains != 1).sum() > n_out // 2


def test_gaintuning_improves_n2i_validation_loss(scan, pretrained, tmp_path):
    res, path = pretrained
    ctx = Context(seed=0, steps=60, work_dir=tmp_path, tune_slice=0)
    out = GainTuning(model=MSD, pretrained=str(path)).run(scan, ctx)
    assert out.info["val_slices"] == [0]
    assert out.info["val_loss_after"] < out.info["val_loss_before"]
    assert out.info["pretrain_seconds"] == 0.0 and out.info["tune_seconds"] > 0
    assert out.params["pretrained_kind"] == "sbd"
    assert set(out.snapshots) == {"pretrained"}


def test_gaintuning_pretrains_with_sbd_when_needed(scan, tmp_path):
    ctx = Context(seed=0, steps=30, work_dir=tmp_path, tune_slice=0)
    out = GainTuning(model=MSD, sbd=SimulationBased(n_phantoms=2, lr=1e-2)).run(scan, ctx)
    assert (tmp_path / "sbd.pt").is_file() and out.params["pretrained"] == str(tmp_path / "sbd.pt")
    assert out.info["pretrain_seconds"] > 0
    assert out.info["total_seconds"] == pytest.approx(out.info["pretrain_seconds"] + out.info["tune_seconds"])
    # the pretraining simulated the X:1 inputs' noise level: (k - 1) / k of the estimated I0
    est = estimate_noise(scan).i0
    assert out.info["pretrain_i0"] == pytest.approx(est * 3 / 4)
    assert out.volume.shape == scan.shape and np.isfinite(out.volume).all()


def test_gaintuning_from_n2i_checkpoint(scan, tmp_path):
    from tomodenoise.config import TrainConfig
    from tomodenoise.train import train_n2i

    cfg = TrainConfig(epochs=3, batch_size=4, lr=1e-2, progress=False, val_fraction=0.34, early_stopping=0,
                      neighbours=0, patch_size=None)
    train_n2i(scan.split_fbps(4), cfg, MSD, tmp_path / "n2i")
    ckpt = tmp_path / "n2i" / "best.pt"
    out = GainTuning(model=MSD, pretrained=str(ckpt)).run(scan, Context(seed=0, steps=30, work_dir=tmp_path))
    assert out.params["pretrained_kind"] == "n2i" and out.params["n_gains"] == 9
    assert out.info["val_loss_after"] <= out.info["val_loss_before"]
    with pytest.raises(ValueError, match="not a tomodenoise N2I checkpoint"):
        torch.save({"format": "other"}, tmp_path / "bad.pt")
        GainTuning(pretrained=str(tmp_path / "bad.pt")).run(scan, Context(steps=2, work_dir=tmp_path))


def test_simulated_foams_match_the_scans_attenuation():
    """A scan of a far more porous foam (many small voids): the simulated line integrals are
    scaled to its mean, so the pretraining data has its value range; without matching they do not."""
    dense = foam_scan(3, n_slices=2, n_det=32, n_angles=64, i0=100, n_spheres=400)
    kw = dict(n_phantoms=2, n_spheres=20, slices_per_phantom=2)
    _, clean_m, factor = sbd_module.simulate_pairs(dense, 100.0, **kw)
    _, clean_raw, one = sbd_module.simulate_pairs(dense, 100.0, match_attenuation=False, **kw)
    assert one == 1.0 and factor < 0.9
    target = float(dense.clean.mean())
    assert abs(clean_m.mean() - target) < 0.1 * target
    assert abs(clean_raw.mean() - target) > 0.15 * target
