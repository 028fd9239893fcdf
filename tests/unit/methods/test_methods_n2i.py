"""Noise2Inverse, Noise2Self (grid masking on the FBP) and split-denoise-reconstruct methods."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tomodenoise.config import ModelConfig
from tomodenoise.metrics import psnr
from tomodenoise.methods import Context, parse_method
from tomodenoise.methods.n2i import Noise2Inverse, n2i_slices, plan_steps
from tomodenoise.methods.noise2self import GridMaskedConfig, grid_mask, masked_input, train_noise2self
from tomodenoise.methods.sample import foam_scan
from tomodenoise.train import split_slices

TINY = {"name": "msd", "params": {"depth": 8}}


@pytest.fixture(scope="module")
def scan():
    return foam_scan(0)


def ctx_for(tmp_path, steps=20, tune=0):
    return Context(seed=0, steps=steps, tune_slice=tune, work_dir=tmp_path)


# --- Noise2Inverse ---------------------------------------------------------------------------
@pytest.mark.parametrize("steps,n_train,k,bs", [(300, 2, 4, 4), (37, 2, 4, 4), (500, 256, 4, 4), (101, 100, 4, 4),
                                                 (1000, 7, 4, 4), (20, 5, 3, 8), (1, 1, 4, 4)])
def test_plan_steps_never_exceeds_the_budget_and_is_exact_when_it_can_be(steps, n_train, k, bs):
    epochs, reps, n = plan_steps(steps, n_train, k, bs)
    total = epochs * math.ceil(n * k * reps / bs)
    assert n >= 1
    assert n <= n_train
    assert total <= steps
    assert total >= steps - steps // 100  # within 1 %
    if (steps, n_train) in [(300, 2), (37, 2), (500, 256), (20, 5)]:
        assert total == steps


def test_n2i_holds_out_the_tuning_slice():
    train, val = n2i_slices(10, tune_slice=0)
    assert val.tolist() == [0] and train.tolist() == list(range(1, 10))  # only the tuning slice is held out
    train, val = n2i_slices(10, tune_slice=-1)  # no tuning slice: the default middle block
    assert val.tolist() == split_slices(10, 0.1)[1].tolist() and set(train) | set(val) == set(range(10))
    train, val = n2i_slices(1, tune_slice=-1)
    assert train.tolist() == [0] and val.size == 0


def test_n2i_runs_via_parse_method_respects_the_step_budget_and_snapshots(scan, tmp_path):
    m = parse_method({"method": "n2i", "model": TINY, "k": 3, "strategy": "1:X", "snapshots": 3})
    assert isinstance(m, Noise2Inverse)
    res = m.run(scan, ctx_for(tmp_path, steps=21))
    assert res.volume.shape == scan.shape and res.volume.dtype == np.float32
    assert np.isfinite(res.volume).all()
    assert res.params["steps"] == 21 and res.info["history"][-1]["step"] == 21
    assert res.train_seconds is not None and res.train_seconds > 0
    assert 0 in res.info["val_slices"] and 0 not in res.info["train_slices"]
    labels = list(res.snapshots)
    steps_at = [int(lab.split("@step")[1]) for lab in labels]
    assert all(lab.startswith("n2i@step") for lab in labels) and len(labels) == 3
    when = res.info["snapshot_seconds"]
    assert list(when) == labels and all(b > a > 0 for a, b in zip(list(when.values()), list(when.values())[1:]))
    assert max(when.values()) <= res.train_seconds
    assert steps_at == sorted(steps_at) and steps_at[-1] == 21
    assert all(v.shape == scan.shape and np.isfinite(v).all() for v in res.snapshots.values())
    # checkpoints differ along the run
    assert not np.allclose(res.snapshots[labels[0]], res.snapshots[labels[-1]])


def test_n2i_beats_fbp_on_foam(scan, tmp_path):
    m = parse_method({"method": "n2i", "model": TINY, "lr": 1e-2, "snapshots": 0})
    res = m.run(scan, ctx_for(tmp_path, steps=60))
    keep = [1, 2]  # not the tuning slice
    dr = float(scan.clean.max() - scan.clean.min())
    gain = psnr(scan.clean[keep], res.volume[keep], dr) - psnr(scan.clean[keep], scan.fbp()[keep], dr)
    assert gain > 0.5, gain
    assert res.snapshots == {}


# --- Noise2Self masking ----------------------------------------------------------------------
def test_grid_mask_phases_cover_every_pixel_once():
    g = 3
    masks = np.stack([grid_mask((7, 8), g, p) for p in range(g * g)])
    assert (masks.sum(0) == 1).all()
    m = grid_mask((7, 8), 4, 0)
    assert m[0, 0] and m[4, 4] and not m[0, 1] and m.sum() == 2 * 2
    with pytest.raises(ValueError):
        grid_mask((4, 4), 1, 0)


@pytest.mark.parametrize("phase", [0, 5, 15])
def test_masked_input_is_j_invariant(phase):
    """No masked pixel's own value reaches the network input: changing the masked pixels
    leaves the input unchanged; masked pixels hold the mean of their 4 neighbours."""
    rng = np.random.default_rng(phase)
    img = rng.normal(size=(2, 9, 10)).astype(np.float32)
    mask = grid_mask(img.shape[-2:], 4, phase)
    other = img.copy()
    other[:, mask] += rng.normal(10.0, 1.0, size=other[:, mask].shape).astype(np.float32)
    a, b = masked_input(img, mask), masked_input(other, mask)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[:, ~mask], img[:, ~mask])  # the rest is untouched
    y, x = np.argwhere(mask)[0]
    if 0 < y < 8 and 0 < x < 9:
        want = 0.25 * (img[:, y - 1, x] + img[:, y + 1, x] + img[:, y, x - 1] + img[:, y, x + 1])
        np.testing.assert_allclose(a[:, y, x], want, rtol=1e-6)
    # a border pixel is filled from inside the image (mirrored), never from itself
    edge = np.zeros((1, 8, 8), np.float32)
    edge[0, 0, 0] = 100.0
    assert masked_input(edge, grid_mask((8, 8), 4, 0))[0, 0, 0] == 0.0


def test_noise2self_loss_counts_only_masked_pixels(tmp_path, monkeypatch):
    """The weights given to ``fit`` are exactly the mask, and the targets are the unmasked data."""
    import tomodenoise.methods.noise2self as n2s

    seen = {}

    def fake_fit(model, batches, ctx, *, steps, lr, **kw):
        x, t, w = batches(np.random.default_rng(0))
        seen.update(x=x.numpy(), t=t.numpy(), w=w.numpy())
        return {"steps": steps, "seconds": 0.0, "loss": 0.0}

    monkeypatch.setattr(n2s, "fit", fake_fit)
    cfg = GridMaskedConfig(model=ModelConfig(**TINY), patch_size=16, batch_size=3, grid=4)
    images = np.random.default_rng(1).normal(size=(2, 24, 24)).astype(np.float32)
    train_noise2self(cfg, images, ctx_for(tmp_path), cfg.grid)
    w = seen["w"].astype(bool)
    assert seen["w"].shape == (3, 1, 16, 16) and set(np.unique(seen["w"])) <= {0.0, 1.0}
    assert w.sum() == 3 * 16 and (w == w[:1]).all()  # one phase of the 4x4 grid for the whole batch
    np.testing.assert_array_equal(seen["x"][~w], seen["t"][~w])
    assert not np.allclose(seen["x"][w], seen["t"][w])


def test_weighted_fit_ignores_unmasked_pixels(tmp_path):
    """With the default weighted MSE of ``fit``, changing targets outside the mask changes nothing."""
    from tomodenoise.methods.training import fit, make_model

    def run(shift):
        model = make_model(ModelConfig(**TINY), 0, "cpu")

        def batches(rng):
            x = torch.from_numpy(rng.normal(size=(2, 1, 12, 12)).astype(np.float32))
            mask = torch.from_numpy(np.broadcast_to(grid_mask((12, 12), 4, 1), x.shape).astype(np.float32))
            return x, x + shift * (1 - mask), mask

        fit(model, batches, ctx_for(tmp_path), steps=3, lr=1e-2)
        return [p.detach().clone() for p in model.parameters()]

    assert all(torch.allclose(a, b) for a, b in zip(run(0.0), run(5.0)))


# --- Noise2Self and SDR runs -----------------------------------------------------------------
@pytest.mark.parametrize("spec", [{"method": "noise2self", "inference": "invariant"}, {"method": "noise2self"},
                                  {"method": "sdr", "grid": 3}])
def test_noise2self_methods_run_via_parse_method(scan, tmp_path, spec):
    m = parse_method({**spec, "model": TINY, "steps": 15})
    res = m.run(scan, ctx_for(tmp_path, steps=999))
    assert res.volume.shape == scan.shape and res.volume.dtype == np.float32
    assert np.isfinite(res.volume).all()
    assert res.params["steps"] == 15 and res.train_seconds > 0
    assert res.params["grid"] == spec.get("grid", 4)
    assert not np.allclose(res.volume, scan.fbp())


def test_n2i_inside_compare_keeps_the_training_summary_off_the_console(scan, tmp_path):
    """train_n2i's 'training ... ends by' line is for a run of its own; inside the comparison it
    goes to the run log only (the record reaches handlers with console=False)."""
    import logging

    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record)

    lg = logging.getLogger("tomodenoise.train")
    h, level = Keep(), lg.level
    lg.addHandler(h)
    lg.setLevel(logging.INFO)
    try:
        parse_method({"method": "n2i", "model": TINY, "snapshots": 0}).run(scan, ctx_for(tmp_path, steps=4))
    finally:
        lg.removeHandler(h)
        lg.setLevel(level)
    training = [r for r in seen if r.getMessage().startswith("training")]
    assert training and all(getattr(r, "console", None) is False for r in training)
