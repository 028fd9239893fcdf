"""The training loop's schedule, time budget and warm start, on tiny data (tomodenoise.train.loop)."""

from __future__ import annotations

import numpy as np
import pytest

from tomodenoise.config import ModelConfig, TrainConfig
from tomodenoise.train import train_n2i

TINY = ModelConfig(name="msd", params={"depth": 4})


def discs(seed: int, k: int = 4, z: int = 6, n: int = 24, sigma: float = 0.5) -> np.ndarray:
    """Clean discs + independent noise per split (a valid N2I setting), another object per seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n]
    clean = np.zeros((z, n, n), np.float32)
    for i in range(z):
        cy, cx = rng.uniform(0.3 * n, 0.7 * n, 2)
        clean[i] = (yy - cy) ** 2 + (xx - cx) ** 2 < (rng.uniform(0.15, 0.3) * n) ** 2
    return (clean[None] + rng.normal(0, sigma, (k, z, n, n))).astype(np.float32)


def cfg(**kw) -> TrainConfig:
    base = dict(epochs=6, batch_size=4, lr=3e-3, progress=False, val_fraction=0.34, early_stopping=0, neighbours=0,
                patch_size=None, patches_per_slice=1)
    return TrainConfig(**(base | kw))


def test_the_learning_rate_warms_up_then_decays_over_the_run(tmp_path):
    res = train_n2i(discs(0), cfg(epochs=8, warmup=0.2), TINY, tmp_path / "r1")
    lrs = [h["lr"] for h in res.history]  # the rate of each epoch's last step
    peak = int(np.argmax(lrs))
    assert 0 < peak < len(lrs) - 1 and lrs[0] < lrs[peak] and lrs[-1] < 0.05 * 3e-3
    const = train_n2i(discs(0), cfg(epochs=3, schedule="constant"), TINY, tmp_path / "r2")
    assert {h["lr"] for h in const.history} == {3e-3}


def test_the_schedule_ends_with_the_time_budget(tmp_path):
    res = train_n2i(discs(0), cfg(epochs=100000, max_minutes=0.04), TINY, tmp_path / "r3")
    assert res.stopped == "max_minutes"
    assert res.history[-1]["lr"] < 0.2 * 3e-3  # decayed by the end of the 2.4 s, not at step 1 of 100000 epochs


def test_early_stopping_on_the_held_out_loss_with_patience_and_min_delta(tmp_path):
    res = train_n2i(discs(0), cfg(epochs=200, early_stopping=2, min_delta=0.5, schedule="constant"), TINY, tmp_path / "r4")
    # a 50 % improvement per epoch is never kept up: it stops `patience` epochs after the best
    assert res.stopped == "early_stopping" and len(res.history) == res.best_epoch + 2 < 200


def test_a_warm_start_reaches_the_cold_start_loss_sooner(tmp_path):
    first = train_n2i(discs(1), cfg(epochs=12), TINY, tmp_path / "r5")  # another scan of the same kind
    cold = train_n2i(discs(2), cfg(epochs=12), TINY, tmp_path / "r6")
    target = cold.best_val_loss
    warm = train_n2i(discs(2), cfg(epochs=12, init_from=str(first.checkpoint)), TINY, tmp_path / "r7")
    reached = next(h["epoch"] for h in warm.history if h["val_loss"] <= target * 1.001)
    assert reached <= 4, [h["val_loss"] for h in warm.history]  # a third of the cold start's epochs or less
    with pytest.raises(ValueError, match="same network"):
        train_n2i(discs(2), cfg(epochs=1, init_from=str(first.checkpoint)), ModelConfig(name="msd", params={"depth": 5}),
                  tmp_path / "r8")
