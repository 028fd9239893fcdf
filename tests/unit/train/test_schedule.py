"""Learning-rate schedules, the time budget and early stopping (tomodenoise.train.schedule)."""

import math
import time

import pytest

from tomodenoise.train.schedule import Budget, EarlyStopping, default_minutes, lr_factor


@pytest.mark.parametrize("kind", ["cosine", "onecycle"])
def test_warm_up_then_decay_to_a_small_rate_at_the_end(kind):
    f = [lr_factor(kind, i / 100) for i in range(101)]
    peak = max(range(101), key=f.__getitem__)
    assert 0 < peak < 50 and math.isclose(f[peak], 1.0, rel_tol=0.02)
    assert all(a <= b + 1e-12 for a, b in zip(f[:peak], f[1:peak + 1]))  # rises to the peak
    assert all(a >= b - 1e-12 for a, b in zip(f[peak:], f[peak + 1:]))  # then only falls
    assert f[0] < 0.1 and f[-1] < 0.02
    assert lr_factor(kind, 1.7) == f[-1] and lr_factor(kind, -1) == f[0]  # clipped


def test_constant_and_unknown():
    assert {lr_factor("constant", p) for p in (0, 0.5, 1)} == {1.0}
    with pytest.raises(ValueError, match="onecycle"):
        lr_factor("step", 0.5)


def test_progress_is_steps_or_time_whichever_runs_out_first():
    b = Budget(total_steps=100, seconds=None)
    assert b.progress(25) == 0.25 and not b.expired() and b.left() is None
    b = Budget(total_steps=1000, seconds=600)  # the pace fits the budget: steps decide (reproducible)
    assert b.progress(Budget.PROBE_STEPS) == Budget.PROBE_STEPS / 1000 and not b.timed
    b = Budget(total_steps=10**9, seconds=0.2)
    time.sleep(0.1)
    assert b.progress(1) < 1e-6  # too few steps to judge the pace
    assert 0.4 < b.progress(Budget.PROBE_STEPS) < 1.0 and b.timed and not b.expired()
    time.sleep(0.15)
    assert b.progress(Budget.PROBE_STEPS + 1) == 1.0 and b.expired() and b.left() == 0.0
    assert b.progress(0) == 1.0  # never goes back


def test_early_stopping_waits_patience_epochs_after_the_best():
    es = EarlyStopping(patience=3, min_delta=0.01)
    losses = [1.0, 0.8, 0.795, 0.81, 0.793, 0.9]  # 0.795 and 0.793 are within 1 % of 0.8: no improvement
    stops = []
    for epoch, v in enumerate(losses, 1):
        es.improved(v, epoch)
        stops.append(es.should_stop(epoch))
    assert es.best_epoch == 2 and stops == [False, False, False, False, True, True]
    assert not EarlyStopping(patience=0).should_stop(100)


def test_a_default_budget_per_device():
    assert default_minutes("cpu") < default_minutes("cuda")
    assert default_minutes("mps") == default_minutes("cpu")
