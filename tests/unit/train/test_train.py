"""Noise2Inverse pairs, the training loop, checkpoints, resume, early stopping."""

from __future__ import annotations


import numpy as np
import pytest
import torch

import tomodenoise.train.validation as validation_mod
from tomodenoise.config import ModelConfig, RunConfig, TrainConfig
from tomodenoise.denoise import denoise
from tomodenoise.train import (
    N2IPairs,
    compute_normalisation,
    load_checkpoint,
    split_slices,
    train_n2i,
)

TINY = ModelConfig(name="msd", params={"depth": 4})


def disc_splits(k=4, z=6, n=16, sigma=0.5, seed=0):
    """Clean discs + independent Gaussian noise per split: a valid N2I setting."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n]
    clean = np.zeros((z, n, n), np.float32)
    c = (n - 1) / 2
    for i in range(z):
        cy, cx = rng.uniform(0.35 * n, 0.65 * n, 2)
        r = rng.uniform(0.15 * n, 0.28 * n)
        clean[i] = 1.0 * ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r) + 0.5 * ((yy - c) ** 2 + (xx - c) ** 2 < (0.45 * n) ** 2)
    noisy = clean[None] + rng.normal(0.0, sigma, (k, z, n, n)).astype(np.float32)
    return clean, noisy.astype(np.float32)


def cfg(**kw) -> TrainConfig:
    # the loop's mechanics on one channel and whole slices (the recipe's choices are tested in test_recipe.py)
    base = dict(epochs=2, batch_size=4, lr=1e-3, progress=False, val_fraction=0.34, early_stopping=0, neighbours=0,
                patch_size=None, patches_per_slice=1)
    base.update(kw)
    return TrainConfig(**base)


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- pairs -----------------------------------------------------------------------------------
def test_dataset_length_is_k_times_slices_and_x1_input_is_leave_one_out_mean():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(4, 3, 8, 8)).astype(np.float32)
    pairs = N2IPairs(s, "X:1")
    assert len(pairs) == 4 * 3
    total = s.sum(0)
    for z in range(3):
        for j in range(4):
            inp, tgt = pairs.pair(z, j)
            np.testing.assert_allclose(inp, (total[z] - s[j, z]) / 3, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(inp, np.delete(s[:, z], j, axis=0).mean(0), rtol=1e-5, atol=1e-5)
            np.testing.assert_array_equal(tgt, s[j, z])
    inp, tgt = pairs[5]  # item i -> slice i // K, split i % K
    np.testing.assert_array_equal(tgt, s[1, 1])


def test_1x_strategy_swaps_input_and_target():
    s = np.random.default_rng(1).normal(size=(3, 2, 8, 8)).astype(np.float32)
    a, b = N2IPairs(s, "X:1"), N2IPairs(s, "1:X", slices=[1])
    assert len(b) == 3
    x1, t1 = a.pair(1, 2)
    x2, t2 = b.pair(1, 2)
    np.testing.assert_array_equal(x1, t2)
    np.testing.assert_array_equal(t1, x2)


@pytest.mark.parametrize("shape", [(8, 8, 8), (1, 4, 8, 8)])
def test_pairs_need_k_splits(shape):
    with pytest.raises(ValueError, match="K >= 2"):
        N2IPairs(np.zeros(shape, np.float32))


def test_split_slices_holds_out_whole_disjoint_slices():
    tr, va = split_slices(10, 0.2)
    assert va.tolist() == [4, 5]
    assert set(tr) | set(va) == set(range(10)) and not set(tr) & set(va)
    tr, va = split_slices(10, 0.0)
    assert va.size == 0 and tr.size == 10
    tr, va = split_slices(1, 0.5)
    assert va.size == 0
    tr, va = split_slices(6, 0.1, val_slices=[0, 5])
    assert va.tolist() == [0, 5] and tr.tolist() == [1, 2, 3, 4]
    with pytest.raises(ValueError):
        split_slices(3, 0.1, val_slices=[7])


def test_normalisation_is_mean_and_std_of_network_inputs():
    _, s = disc_splits()
    pairs = N2IPairs(s, "X:1", slices=[0, 1, 2])
    norm = compute_normalisation(pairs)
    inputs = np.stack([pairs.pair(z, j)[0] for z in (0, 1, 2) for j in range(4)])
    assert norm["mean"] == pytest.approx(float(inputs.mean()), rel=1e-5)
    assert norm["std"] == pytest.approx(float(inputs.std()), rel=1e-5)


# --- training and checkpoints ----------------------------------------------------------------
def test_checkpoints_load_with_weights_only(tmp_path):
    _, s = disc_splits()
    run = RunConfig().model_dump(mode="json")
    res = train_n2i(s, cfg(), TINY, tmp_path, run_config=run)
    assert res.checkpoint == tmp_path / "best.pt" and res.last_checkpoint == tmp_path / "last.pt"
    for path in (res.checkpoint, res.last_checkpoint):
        ckpt = torch.load(path, weights_only=True)
        assert ckpt["model"] == {"name": "msd", "params": {"depth": 4}}
        assert ckpt["split"] == {"k": 4, "strategy": "X:1"} and ckpt["strategy"] == "X:1" and ckpt["k"] == 4
        assert set(ckpt["normalisation"]) == {"mean", "std"}
        assert ckpt["train_config"]["epochs"] == 2
        assert ckpt["run_config"] == run
        assert "state" in ckpt["optimizer"] and ckpt["history"]
        assert ckpt["val_slices"] == res.val_slices == [2, 3]
    assert not list(tmp_path.glob("*.tmp*"))
    model, meta = load_checkpoint(res.checkpoint)
    assert meta["normalisation"] == res.normalisation and "state_dict" not in meta
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), res.model(x))


def test_best_checkpoint_is_the_epoch_with_minimum_val_loss(tmp_path, monkeypatch):
    _, s = disc_splits()
    res = train_n2i(s, cfg(epochs=4), TINY, tmp_path / "real")
    vals = [h["val_loss"] for h in res.history]
    assert res.best_val_loss == min(vals) and res.best_epoch == 1 + int(np.argmin(vals))
    assert torch.load(res.checkpoint, weights_only=True)["epoch"] == res.best_epoch

    losses = iter([3.0, 1.0, 2.0, 4.0])
    monkeypatch.setattr(validation_mod, "n2i_validation_loss", lambda *a, **k: next(losses))
    res = train_n2i(s, cfg(epochs=4), TINY, tmp_path / "scripted")
    assert res.best_epoch == 2 and res.best_val_loss == 1.0
    assert [h["improved"] for h in res.history] == [True, True, False, False]
    best = torch.load(res.checkpoint, weights_only=True)
    assert best["epoch"] == 2 and torch.load(res.last_checkpoint, weights_only=True)["epoch"] == 4
    # the best checkpoint holds the weights after epoch 2 (training is deterministic; a constant
    # learning rate, so that the schedule of a 2-epoch run is that of a 4-epoch one)
    monkeypatch.undo()
    losses = iter([3.0, 1.0, 2.0, 4.0])
    monkeypatch.setattr(validation_mod, "n2i_validation_loss", lambda *a, **k: next(losses))
    res = train_n2i(s, cfg(epochs=4, schedule="constant"), TINY, tmp_path / "constant")
    monkeypatch.undo()
    two = train_n2i(s, cfg(epochs=2, schedule="constant"), TINY, tmp_path / "two")
    assert _same(torch.load(res.checkpoint, weights_only=True)["state_dict"], _weights(two.last_checkpoint))


def test_early_stopping_triggers(tmp_path, monkeypatch):
    _, s = disc_splits()
    losses = iter([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    monkeypatch.setattr(validation_mod, "n2i_validation_loss", lambda *a, **k: next(losses))
    res = train_n2i(s, cfg(epochs=10, early_stopping=2), TINY, tmp_path)
    assert res.stopped == "early_stopping"
    assert len(res.history) == 3 and res.best_epoch == 1


def test_resume_continues_the_epoch_count_and_matches_an_uninterrupted_run(tmp_path):
    _, s = disc_splits()
    c = dict(patch_size=8, patches_per_slice=2, augment=True)
    full = train_n2i(s, cfg(epochs=3, **c), TINY, tmp_path / "full")

    def stop_after_first(epoch, epochs, entry):  # SIGTERM or Ctrl-C right after epoch 1 was saved
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_n2i(s, cfg(epochs=3, **c), TINY, tmp_path / "part", on_epoch=stop_after_first)
    last = tmp_path / "part" / "last.pt"
    assert torch.load(last, weights_only=True)["epoch"] == 1
    resumed = train_n2i(s, cfg(epochs=3, resume=str(last), **c), TINY, tmp_path / "part")
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert torch.load(resumed.last_checkpoint, weights_only=True)["epoch"] == 3
    assert _same(_weights(resumed.last_checkpoint), _weights(full.last_checkpoint))
    assert resumed.history[-1]["val_loss"] == pytest.approx(full.history[-1]["val_loss"])
    assert resumed.normalisation == full.normalisation


def test_resume_with_another_model_is_an_error(tmp_path):
    _, s = disc_splits()
    first = train_n2i(s, cfg(epochs=1), TINY, tmp_path)
    with pytest.raises(ValueError, match="model"):
        train_n2i(s, cfg(epochs=2, resume=str(first.last_checkpoint)), ModelConfig(name="msd", params={"depth": 5}), tmp_path)


def test_max_minutes_stops_and_saves(tmp_path):
    _, s = disc_splits()
    res = train_n2i(s, cfg(epochs=50, max_minutes=1e-6), TINY, tmp_path)
    assert res.stopped == "max_minutes" and len(res.history) == 1 and res.history[0]["partial"]
    assert res.checkpoint.exists() and res.last_checkpoint.exists()


def test_without_held_out_slices_the_training_loss_is_monitored(tmp_path):
    _, s = disc_splits(z=1)
    res = train_n2i(s, cfg(epochs=2, strategy="1:X"), TINY, tmp_path)
    assert res.val_slices == [] and "val_loss" not in res.history[0]
    assert res.best_val_loss == min(h["train_loss"] for h in res.history)


def test_bad_input_is_rejected(tmp_path):
    _, s = disc_splits()
    s[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        train_n2i(s, cfg(), TINY, tmp_path)
    with pytest.raises(ValueError, match="K >= 2"):
        train_n2i(s[0], cfg(), TINY, tmp_path)
    assert not (tmp_path / "best.pt").exists()


def test_n2i_training_reduces_the_error_to_the_clean_image(tmp_path):
    clean, s = disc_splits(k=4, z=8, n=32, sigma=0.5, seed=3)
    c = cfg(epochs=30, batch_size=8, lr=1e-2, val_fraction=0.25)
    res = train_n2i(s, c, ModelConfig(name="msd", params={"depth": 10}), tmp_path)
    out = denoise(res.model, s, strategy="X:1", normalisation=res.normalisation)
    mse_mean = float(np.mean((s.mean(0) - clean) ** 2))  # the full-data "FBP"
    mse_den = float(np.mean((out - clean) ** 2))
    assert mse_den < 0.6 * mse_mean, (mse_den, mse_mean)


def test_on_epoch_reports_every_epoch_with_its_losses(tmp_path):
    seen = []
    res = train_n2i(disc_splits()[1], cfg(epochs=3), TINY, tmp_path,
                    on_epoch=lambda e, n, entry: seen.append((e, n, entry["train_loss"])))
    assert [(e, n) for e, n, _ in seen] == [(1, 3), (2, 3), (3, 3)]
    assert [loss for *_, loss in seen] == [h["train_loss"] for h in res.history]

