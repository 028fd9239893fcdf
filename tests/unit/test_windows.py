"""Time steps of a dynamic scan: windows by angle or time, interlacing, splits within a step,
and neighbours along time and channel axes."""

from __future__ import annotations

import numpy as np
import pytest

from tomodenoise.splits import split_indices, time_windows, unwrap_rotation
from tomodenoise.train import N2IPairs, split_items


def _stream(n_steps: float, per_step: float, seconds: float = 0.1, span: float = np.pi):
    n = int(np.floor(n_steps * per_step))
    t = np.arange(n) * seconds / per_step
    return t * span / seconds, t  # continuous rotation: angle grows with time


def test_non_integer_projections_per_step_give_windows_of_both_lengths():
    angles, t = _stream(8, 299.92)
    steps = time_windows(angles, t, by="angle", span=np.pi)
    counts = [s.projections.size for s in steps]
    assert len(steps) == 8
    assert set(counts) == {299, 300}
    assert sum(counts) == angles.size  # every projection in exactly one step
    assert np.isclose(np.mean(counts), 299.92, atol=0.2)
    allp = np.concatenate([s.projections for s in steps])
    assert np.array_equal(allp, np.arange(angles.size))


def test_each_window_covers_one_rotation_and_successive_steps_are_interlaced():
    angles, t = _stream(4, 100.5)
    steps = time_windows(angles, t, span=np.pi)
    for s in steps:
        a = angles[s.projections] - s.start
        assert a.min() >= -1e-9 and a.max() < np.pi
    first0 = np.mod(angles[steps[0].projections[0]], np.pi)
    first1 = np.mod(angles[steps[1].projections[0]], np.pi)
    step = np.pi / 100.5
    # half a projection interval apart: step 1 samples between the angles of step 0
    assert np.isclose(abs(first1 - first0), step / 2, atol=1e-9)


def test_wrapped_and_backwards_angles_unwrap_to_one_increasing_rotation():
    angles, t = _stream(3, 50)
    wrapped = np.mod(-angles, 2 * np.pi)  # stored in [0, 2 pi), rotating backwards
    rot = unwrap_rotation(wrapped)
    assert np.allclose(rot, angles)
    steps = time_windows(wrapped, t, span=np.pi)
    assert [s.projections.size for s in steps] == [50, 50, 50]


def test_time_windows_use_the_time_stamps_and_report_the_mean_time():
    angles, t = _stream(6, 40, seconds=0.1)
    steps = time_windows(angles, t, by="time", seconds=0.2)
    assert len(steps) == 3
    assert [s.projections.size for s in steps] == [80, 80, 80]
    assert np.allclose([s.time for s in steps], [0.1, 0.3, 0.5], atol=0.01)
    with pytest.raises(ValueError, match="time stamps"):
        time_windows(angles, None, by="time", seconds=0.2)


def test_an_incomplete_last_window_is_left_out_and_a_short_stream_refused():
    angles, t = _stream(3.5, 40)
    assert len(time_windows(angles, t, span=np.pi)) == 3
    with pytest.raises(ValueError, match="not one complete time step"):
        time_windows(angles[:10], t[:10], span=np.pi)


def test_splits_are_taken_within_each_time_step():
    angles, t = _stream(3, 41.5)
    steps = time_windows(angles, t, span=np.pi)
    for s in steps:  # the pipeline splits each step's projections (the store's angle axis is within a step)
        splits = [s.projections[i] for i in split_indices(s.projections.size, 4)]
        got = np.sort(np.concatenate(splits))
        assert np.array_equal(got, s.projections)  # a partition of the step, nothing from another step
        for j, idx in enumerate(splits):
            assert np.array_equal(idx, s.projections[j::4])  # interlaced within the step
            span = np.ptp(angles[idx])
            assert span > np.pi - 5 * 4 * np.pi / 41.5  # every split spans the step's rotation


def test_neighbours_along_time_stay_within_the_channel_and_slice():
    k, nt, nc, nz = 2, 3, 1, 2
    data = np.arange(k * nt * nc * nz, dtype=np.float32).reshape(k, nt * nc * nz, 1, 1) * np.ones((1, 1, 4, 4))
    pairs = N2IPairs(data, "1:X", neighbours=1, volume_shape=(nt, nc, nz), neighbour_axis="time")
    # image (t=1, z=1) is flat index 3; its time neighbours are (t=0, z=1) = 1 and (t=2, z=1) = 5
    assert pairs.neighbour_indices(3) == [1, 3, 5]
    assert pairs.neighbour_indices(1) == [1, 1, 3]  # clamped at the first time step
    x, _ = pairs.pair(3, 0)
    assert x.shape == (3, 4, 4)
    assert np.allclose(x[:, 0, 0], [1, 3, 5])  # split 0 of those images


def test_neighbours_along_z_do_not_cross_into_the_next_time_step():
    pairs = N2IPairs(np.zeros((2, 6, 4, 4)), neighbours=1, volume_shape=(2, 1, 3), neighbour_axis="z")
    assert pairs.neighbour_indices(2) == [1, 2, 2]  # the last slice of step 0
    assert pairs.neighbour_indices(3) == [3, 3, 4]  # the first slice of step 1


def test_neighbours_along_channels():
    pairs = N2IPairs(np.zeros((2, 8, 4, 4)), neighbours=2, volume_shape=(1, 8, 1), neighbour_axis="channel")
    assert pairs.neighbour_indices(0) == [0, 0, 0, 1, 2]
    assert pairs.neighbour_indices(5) == [3, 4, 5, 6, 7]
    with pytest.raises(ValueError, match="volume_shape"):
        N2IPairs(np.zeros((2, 8, 4, 4)), volume_shape=(1, 4, 1))


def test_held_out_images_cover_every_time_step_or_are_spread_over_channels():
    train, val = split_items((3, 1, 10), 0.2)
    assert len(val) == 6 and set(val // 10) == {0, 1, 2}  # 2 middle slices of every time step
    assert np.intersect1d(train, val).size == 0 and train.size + val.size == 30
    train, val = split_items((1, 50, 1), 0.1)  # XRD-CT, one slice: evenly spread channels
    assert len(val) == 5 and val.min() > 0 and val.max() < 49 and np.all(np.diff(val) >= 5)
    assert split_items((1, 1, 10), 0.2)[1].tolist() == [4, 5]  # one volume: as before
