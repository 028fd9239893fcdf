"""The recipe `run` uses by default (sized from the scan), the budget check and the training's progress display."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest

from tomodenoise.config import ModelConfig, RunConfig, TrainConfig
from tomodenoise.train import train_n2i
from tomodenoise.train.progress import PROBE_STEPS, TrainingProgress
from tomodenoise.train.recipe import STEPS_NEEDED, budget_warning, resolve_recipe
from tomodenoise.train.schedule import Budget


def _resolve(shape=(512, 512), vol=(1, 1, 16), n_train=14, k=4, dev="cpu", **kw):
    return resolve_recipe(TrainConfig(**kw), ModelConfig(), image_shape=shape, volume_shape=vol, n_train=n_train,
                          k=k, device_type=dev)


def test_default_recipe_is_the_measured_one_on_a_benchmark_sized_scan():
    r = _resolve()
    t, m = r.train, r.model
    assert (m.name, m.params) == ("msd", {"depth": 30, "width": 1})
    assert (t.patch_size, t.batch_size, t.lr, t.neighbours) == (128, 4, 2e-3, 2)
    # an epoch of about 100 steps: 14 slices x 4 splits x patches / batch 4
    assert 95 <= 14 * 4 * t.patches_per_slice / 4 <= 120
    assert isinstance(t.epochs, int) and t.epochs * 100 >= 8000 * 0.9
    assert "recipe" in r.line() and "MS-D" in r.line()


def test_recipe_is_sized_from_the_scan_and_the_device():
    thin = _resolve(shape=(135, 160), vol=(1, 1, 2), n_train=1)
    assert thin.train.neighbours == 0 and thin.train.patch_size is None and thin.train.patches_per_slice == 1
    assert "whole 135 x 160 slices" in thin.line()
    three = _resolve(vol=(1, 1, 3), n_train=2)
    assert three.train.neighbours == 1
    tooth = _resolve(shape=(640, 640), vol=(1, 1, 2), n_train=1)
    assert tooth.train.patch_size == 128 and tooth.train.patches_per_slice == 100  # 100 steps an epoch of 1 slice
    gpu = _resolve(dev="cuda")
    assert gpu.train.batch_size == 16
    dyn = resolve_recipe(TrainConfig(neighbour_axis="time"), ModelConfig(), image_shape=(128, 128),
                         volume_shape=(8, 1, 4), n_train=28, k=4)
    assert dyn.train.neighbours == 2


def test_explicit_settings_are_kept():
    r = resolve_recipe(TrainConfig(patch_size=64, batch_size=2, lr=1e-4, neighbours=0, epochs=3, patches_per_slice=5),
                       ModelConfig(name="msd", params={"depth": 8}), image_shape=(512, 512), volume_shape=(1, 1, 16),
                       n_train=14, k=4)
    t = r.train
    assert (t.patch_size, t.batch_size, t.lr, t.neighbours, t.epochs, t.patches_per_slice) == (64, 2, 1e-4, 0, 3, 5)
    assert r.model.params == {"depth": 8}
    unet = resolve_recipe(TrainConfig(), ModelConfig(name="unet"), image_shape=(64, 64), volume_shape=(1, 1, 4),
                          n_train=3, k=4)
    assert unet.model.params == {}


def test_auto_values_round_trip_and_overrides_parse():
    cfg = RunConfig()
    assert RunConfig.from_yaml(cfg.to_yaml()) == cfg
    from tomodenoise.cli import apply_sets

    c = apply_sets(cfg, ["train.lr=1e-3", "train.patch_size=null", "train.neighbours=0"])
    assert (c.train.lr, c.train.patch_size, c.train.neighbours) == (1e-3, None, 0)
    with pytest.raises(ValueError):
        RunConfig().with_overrides({"train": {"batch_size": 0}})
    with pytest.raises(ValueError):
        RunConfig().with_overrides({"train": {"patch_size": "big"}})


def test_budget_warning_names_minutes_and_remedy():
    assert budget_warning(STEPS_NEEDED, 10.0) is None
    msg = budget_warning(300, 3.0)
    assert "300" in msg and f"{STEPS_NEEDED}" in msg and "train.max_minutes=" in msg
    need = int(msg.split("train.max_minutes=")[1].split(")")[0])
    assert need >= 3.0 * STEPS_NEEDED / 300


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _drive(stream, steps=60, seconds_per_step=1.0, minutes=0.5, total=1000):
    clock = _Clock()
    budget = Budget(total_steps=total, seconds=minutes * 60, clock=clock)
    prog = TrainingProgress(total, 0, budget, minutes, enabled=True, stream=stream)
    step = 0
    shares = []
    while not budget.expired() and step < steps:
        clock.t += seconds_per_step
        step += 1
        prog.update(step, 1, 3, 1.0, "-")
        shares.append(prog.share(step))
    return prog, prog.close(step, "max_minutes"), shares


def test_short_budget_is_flagged_after_the_warm_up(caplog):
    with caplog.at_level(logging.WARNING, logger="tomodenoise.train"):
        prog, check, shares = _drive(io.StringIO(), minutes=1.0)  # 60 steps of 1 s allowed, 400 needed
    assert check["short"] is True and check["steps_in_budget"] <= 60 and check["steps"] == 60
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "train.max_minutes=" in warnings[0]
    assert shares[0] < 0.05  # the share of the budget, not 100 % from the first step


def test_enough_budget_is_not_flagged(caplog):
    with caplog.at_level(logging.WARNING, logger="tomodenoise.train"):
        clock = _Clock()
        budget = Budget(total_steps=2000, seconds=600, clock=clock)
        prog = TrainingProgress(2000, 0, budget, 10.0, enabled=True, stream=io.StringIO())
        for step in range(1, PROBE_STEPS + 5):
            clock.t += 0.1
            prog.update(step, 1, 20, 1.0, "-")
    assert prog.check["short"] is False and prog.check["steps_in_budget"] == 2000
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_bar_on_a_terminal_shows_the_budget_share_and_no_frames_elsewhere(caplog):
    tty = _Tty()
    _drive(tty, steps=30, minutes=10.0)
    out = tty.getvalue()
    assert "% of the" in out and "\r" in out
    assert "100%|" not in out.split("\r")[2]  # not full at its first steps
    plain = io.StringIO()
    with caplog.at_level(logging.INFO, logger="tomodenoise.train"):
        _drive(plain, steps=120, seconds_per_step=5.0, minutes=10.0)  # the whole budget, off a terminal
    assert plain.getvalue() == ""  # no bar frames at all
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("training ")]
    assert 4 <= len(lines) <= 6 and all("\r" not in m for m in lines)  # a plain line every 20 %
    assert lines[-1].startswith("training   100%")


def test_budget_warning_is_said_without_a_progress_bar_and_not_on_an_interrupt(caplog):
    clock = _Clock()
    with caplog.at_level(logging.WARNING, logger="tomodenoise.train"):
        prog = TrainingProgress(1000, 0, Budget(total_steps=1000, seconds=60, clock=clock), 1.0, enabled=False,
                                stream=io.StringIO(), warn=True)
        for step in range(1, 10):
            clock.t += 1.0
            prog.update(step, 1, 3, 1.0, "-")
        check = prog.close(9, "max_minutes")
    assert check["short"] and len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tomodenoise.train"):
        prog = TrainingProgress(1000, 0, Budget(total_steps=1000, seconds=600, clock=clock), 10.0, enabled=True,
                                stream=io.StringIO())
        prog.update(1, 1, 3, 1.0, "-")
        check = prog.close(1, "interrupted")
    assert not caplog.records and not check["warning"]


def test_train_n2i_resolves_auto_and_records_the_budget(tmp_path):
    rng = np.random.default_rng(0)
    clean = np.zeros((6, 24, 24), np.float32)
    clean[:, 6:18, 6:18] = 1
    s = (clean[None] + rng.normal(0, 0.3, (4, 6, 24, 24))).astype(np.float32)
    res = train_n2i(s, TrainConfig(epochs=1, progress=False, val_fraction=0.34, max_minutes=0.5),
                    ModelConfig(name="msd", params={"depth": 3}), tmp_path)
    t = res.train_config
    assert t["neighbours"] == 2 and t["patch_size"] is None and t["batch_size"] == 4 and t["lr"] == 2e-3
    assert res.budget["short"] is True  # one epoch of a few steps: far from what the recipe needs
    assert (tmp_path / "budget.json").exists()


def test_a_batch_larger_than_the_training_items_is_warned_about():
    # whole 135 x 160 slices: 14 slices x 4 splits = 56 items an epoch
    big = _resolve(shape=(135, 160), batch_size=1000000)
    assert big.train.batch_size == 1000000  # kept: legal
    assert big.warnings == ["train.batch_size = 1000000 is more than the 56 training items: every step uses all of "
                            "them, so an epoch is one step; leave batch_size: auto"]
    assert _resolve(shape=(135, 160), batch_size=56).warnings == []
    assert _resolve(shape=(135, 160), n_train=1, dev="cuda").warnings == []  # auto 16 > 4 items: the recipe's choice
    # patches: 14 x 4 x 3 patches = 168 items; auto patches per slice grow with the batch
    assert "168 training items" in _resolve(batch_size=200, patches_per_slice=3).warnings[0]
    assert _resolve(batch_size=200).warnings == []
    two = resolve_recipe(TrainConfig(batch_size=40), ModelConfig(), image_shape=(64, 64), volume_shape=(1, 1, 16),
                         n_train=14, k=4, world=2)
    assert "the 28 training items of each rank" in two.warnings[0]


def test_a_batch_larger_than_the_data_is_logged_once_and_training_goes_on(tmp_path, caplog):
    rng = np.random.default_rng(1)
    s = rng.normal(0, 1, (2, 4, 24, 24)).astype(np.float32)  # 2 splits x 4 slices, one held out: 6 items
    with caplog.at_level(logging.WARNING, logger="tomodenoise"):
        res = train_n2i(s, TrainConfig(epochs=2, batch_size=1000000, progress=False, val_slices=[3], neighbours=0,
                                       max_minutes=0.5), ModelConfig(name="msd", params={"depth": 2}), tmp_path)
    logged = [r.getMessage() for r in caplog.records if "train.batch_size" in r.getMessage()]
    assert logged == ["train.batch_size = 1000000 is more than the 6 training items: every step uses all of them, "
                      "so an epoch is one step; leave batch_size: auto"]
    assert res.train_config["batch_size"] == 1000000 and len(res.history) == 2  # one step an epoch, both epochs
