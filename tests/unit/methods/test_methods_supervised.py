"""Supervised, Noise2Noise and TomoGAN comparison methods on a tiny foam scan."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from tomodenoise.config import ModelConfig
from tomodenoise.methods import Context, Scan, parse_method
from tomodenoise.methods.sample import foam_scan
from tomodenoise.methods.supervised import Noise2Noise, Supervised, cross_fit_folds, pair_batches
from tomodenoise.methods.tomogan import (Discriminator, TomoGAN, load_feature_network, perceptual_loss,
                                         vgg_features)
from tomodenoise.methods.training import make_model
from tomodenoise.metrics import psnr

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")

MODEL = ModelConfig(name="msd", params={"depth": 8})
EVAL = [0, 2]  # the comparison's tune slice is 1: reported metrics exclude it


@pytest.fixture(scope="module")
def scan() -> Scan:
    return foam_scan(0, n_slices=3, n_det=32, n_angles=96, i0=50, second=True)


def ctx(steps: int = 20) -> Context:
    return Context(seed=0, steps=steps, tune_slice=1)


def score(scan: Scan, vol: np.ndarray) -> float:
    ref = scan.clean[EVAL]
    return psnr(ref, vol[EVAL], data_range=float(ref.max() - ref.min()))


class TinyFeatures(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.fixture(scope="module")
def feature_file(tmp_path_factory) -> str:
    torch.manual_seed(5)
    path = tmp_path_factory.mktemp("feat") / "features.pt"
    torch.jit.save(torch.jit.script(TinyFeatures()), str(path))
    return str(path)


# --- configs ---------------------------------------------------------------------------------

def test_parse_round_trips_with_loss_weights(feature_file):
    spec = {"method": "tomogan", "w_adv": 0.01, "w_mse": 0.5, "w_perc": 2.0, "feature_weights": feature_file,
            "d_steps": 1, "model": {"name": "msd", "params": {"depth": 8}}, "steps": 7}
    cfg = parse_method(spec)
    assert isinstance(cfg, TomoGAN) and (cfg.w_adv, cfg.w_mse, cfg.w_perc) == (0.01, 0.5, 2.0)
    again = parse_method(cfg.model_dump())
    assert again == cfg and again.model.params == {"depth": 8}
    assert isinstance(parse_method("supervised"), Supervised) and Supervised.needs == ("clean",)
    n2n = parse_method({"method": "noise2noise", "apply_to": "both"})
    assert isinstance(n2n, Noise2Noise) and n2n.apply_to == "both" and Noise2Noise.needs == ("second",)
    assert parse_method(n2n.model_dump()) == n2n
    assert TomoGAN.needs == ("clean",) and parse_method("tomogan").w_perc == 0  # the default runs without a file
    with pytest.raises(ValidationError):
        parse_method({"method": "tomogan", "w_adv": -1})
    with pytest.raises(ValidationError):
        parse_method({"method": "noise2noise", "apply_to": "sum"})


def test_perceptual_weight_without_a_file_is_a_clear_error():
    with pytest.raises(ValidationError, match="w_perc > 0 needs feature_weights"):
        TomoGAN(w_perc=1.0)


def test_missing_weights_file_is_a_clear_error(scan, tmp_path):
    cfg = TomoGAN(model=MODEL, w_perc=1.0, feature_weights=str(tmp_path / "nope.pt"), steps=2)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cfg.run(scan, ctx())


def test_state_dict_given_as_torchscript_is_a_clear_error(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save(vgg_features("vgg16", 3).state_dict(), path)
    with pytest.raises(ValueError, match="not a TorchScript archive"):
        load_feature_network(path, "torchscript")


# --- data handling ---------------------------------------------------------------------------

@pytest.mark.parametrize("n", [2, 3, 6])
def test_cross_fit_folds_denoise_every_slice_once_and_never_with_its_own_reference(n):
    folds = cross_fit_folds(n)
    applied = sorted(z for _, ap in folds for z in ap)
    assert applied == list(range(n))
    for train, ap in folds:
        assert train and not set(train) & set(ap)


def test_one_slice_is_in_sample():
    assert cross_fit_folds(1) == [([0], [0])]


def test_pair_batches_crop_and_augment_input_and_target_alike():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2, 12, 12)).astype(np.float32)
    x, t, w = pair_batches(a, 3 * a, {"mean": 0.0, "std": 1.0}, batch_size=16, patch_size=8)(rng)
    assert x.shape == t.shape == (16, 1, 8, 8) and w is None
    assert torch.allclose(t, 3 * x)


def test_missing_clean_and_missing_second_are_clear_errors(scan):
    bare = Scan(sino=scan.sino, angles=scan.angles)
    with pytest.raises(ValueError, match="supervised needs a clean reference"):
        Supervised(model=MODEL, steps=1).run(bare, ctx())
    with pytest.raises(ValueError, match="tomogan needs a clean reference"):
        TomoGAN(model=MODEL, steps=1).run(bare, ctx())
    with pytest.raises(ValueError, match="repeat scan"):
        Noise2Noise(model=MODEL, steps=1).run(bare, ctx())
    with pytest.raises(ValueError, match="repeat scan"):
        TomoGAN(model=MODEL, steps=1, target="second").run(bare, ctx())


# --- training --------------------------------------------------------------------------------

def test_supervised_beats_fbp_and_no_slice_is_denoised_with_its_own_reference(scan):
    res = Supervised(model=MODEL, steps=100, lr=1e-2).run(scan, ctx())
    assert res.volume.shape == scan.shape and res.volume.dtype == np.float32
    assert res.params["folds"] == 2
    gain = score(scan, res.volume) - score(scan, scan.fbp())
    assert gain > 1.0, f"supervised only {gain:.2f} dB over FBP"
    # slice 1's reference trains only the network of the other fold: its own output is unchanged
    other = Scan(sino=scan.sino, angles=scan.angles, clean=scan.clean.copy())
    other.clean[1] = 0.0
    res2 = Supervised(model=MODEL, steps=10).run(other, ctx())
    res3 = Supervised(model=MODEL, steps=10).run(scan, ctx())
    np.testing.assert_allclose(res2.volume[1], res3.volume[1], atol=1e-6 * float(np.abs(res3.volume).max()))
    assert not np.allclose(res2.volume[[0, 2]], res3.volume[[0, 2]])


def test_noise2noise_beats_fbp_and_apply_to_choices(scan):
    res = Noise2Noise(model=MODEL, steps=100, lr=1e-2).run(scan, ctx())
    assert res.volume.shape == scan.shape and res.params["apply_to"] == "first"
    gain = score(scan, res.volume) - score(scan, scan.fbp())
    assert gain > 1.0, f"noise2noise only {gain:.2f} dB over FBP"
    both = Noise2Noise(model=MODEL, steps=5, apply_to="both").run(scan, ctx())
    avg = Noise2Noise(model=MODEL, steps=5, apply_to="average").run(scan, ctx())
    first = Noise2Noise(model=MODEL, steps=5).run(scan, ctx())
    assert both.volume.shape == avg.volume.shape == scan.shape
    assert not np.allclose(both.volume, first.volume) and not np.allclose(avg.volume, both.volume)


def test_tomogan_without_adversary_or_perceptual_is_plain_mse_training(scan):
    sup = Supervised(model=MODEL, steps=20, lr=1e-2).run(scan, ctx())
    gan = TomoGAN(model=MODEL, steps=20, lr=1e-2, w_adv=0.0, w_perc=0.0).run(scan, ctx())
    scale = float(np.abs(sup.volume).max())
    np.testing.assert_allclose(gan.volume, sup.volume, atol=1e-5 * scale)
    assert gan.info["d_loss"] is None and gan.info["loss"] < gan.info["loss_start"]


def test_tomogan_adversarial_training_runs_and_learns(scan):
    res = TomoGAN(model=MODEL, steps=30, lr=1e-2, w_adv=1e-2).run(scan, ctx())
    assert res.volume.shape == scan.shape and np.isfinite(res.volume).all()
    assert res.params["w_adv"] == 1e-2 and res.params["folds"] == 2
    assert res.info["d_loss"] is not None and np.isfinite(res.info["adv"])
    assert res.info["mse"] < res.info["loss_start"]  # the MSE part went down from the start
    n2n = TomoGAN(model=MODEL, steps=3, target="second", d_steps=1).run(scan, ctx())
    assert n2n.volume.shape == scan.shape and n2n.params["target"] == "second"


def test_discriminator_gives_one_logit_per_image():
    d = Discriminator(1, features=4, layers=2)
    assert d(torch.zeros(3, 1, 16, 16)).shape == (3,)


def test_perceptual_loss_loads_user_weights_and_reaches_the_generator(scan, feature_file):
    feats = load_feature_network(feature_file)
    assert not any(p.requires_grad for p in feats.parameters())
    gen = make_model(MODEL, 0, "cpu")
    x = torch.from_numpy(scan.fbp()[:2, None]).float()
    loss = perceptual_loss(feats, gen(x), torch.from_numpy(scan.clean[:2, None]).float())
    loss.backward()
    grads = [p.grad for p in gen.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0
    # a perceptual-only run trains the generator through the user's network
    untrained = TomoGAN(model=MODEL, steps=1, lr=1e-12, w_adv=0.0).run(scan, ctx())
    res = TomoGAN(model=MODEL, steps=30, lr=1e-2, w_adv=0.0, w_mse=0.0, w_perc=1.0,
                  feature_weights=feature_file).run(scan, ctx())
    assert res.info["perc"] is not None and res.info["mse"] is None
    assert res.info["loss"] < res.info["loss_start"]
    assert not np.allclose(res.volume, untrained.volume)


def test_vgg_state_dict_is_loaded_into_the_named_network(tmp_path):
    torch.manual_seed(1)
    ref = vgg_features("vgg16", 3)
    path = tmp_path / "vgg16.pth"
    torch.save({f"features.{k}": v for k, v in ref.state_dict().items()}, path)
    net = load_feature_network(path, "vgg16", layer=3)
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(net(x), ref(x.expand(-1, 3, -1, -1)))
    with pytest.raises(ValueError, match="lacks vgg16 weights"):
        load_feature_network(path, "vgg16", layer=8)
