"""The atomic HDF5 writer (tomodenoise.io.hdf5.created): the file it leaves has the mode any new
file gets under the process's umask (group-readable under the usual 022/027), not mkstemp's 0600,
so another uid of the group (a container's, a SLURM job's) can read what `simulate` writes."""

from __future__ import annotations

import os
import stat

import h5py
import numpy as np
import pytest

from tomodenoise.io.dxchange import write_dxchange
from tomodenoise.io.hdf5 import created


@pytest.fixture
def umask():
    """Set the umask for one test (restored after)."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664), (0o077, 0o600)])
def test_created_file_has_the_umask_mode(tmp_path, umask, mask, expected):
    umask(mask)
    target = tmp_path / "scan.h5"
    with created(target) as f:
        f["x"] = np.arange(3)
    assert _mode(target) == expected
    with h5py.File(target, "r") as f:
        assert f["x"][()].tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["scan.h5"]  # no temporary file left


def test_simulated_scan_is_group_readable(tmp_path, umask):
    """What `tomodenoise simulate` writes (write_dxchange) is readable by the group."""
    umask(0o027)
    out = tmp_path / "sim.h5"
    write_dxchange(out, np.ones((2, 2, 3), np.float32), None, None, np.array([0.0, 1.0]))
    assert _mode(out) & stat.S_IRGRP and not _mode(out) & stat.S_IROTH


def test_failed_write_leaves_nothing(tmp_path, umask):
    umask(0o022)
    target = tmp_path / "scan.h5"
    with pytest.raises(RuntimeError), created(target) as f:
        f["x"] = np.arange(3)
        raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []


def test_overwrite_keeps_the_umask_mode(tmp_path, umask):
    target = tmp_path / "scan.h5"
    target.write_bytes(b"old")
    target.chmod(0o600)
    with pytest.raises(FileExistsError):
        with created(target):
            pass
    umask(0o022)
    with created(target, overwrite=True) as f:
        f["y"] = 1
    assert _mode(target) == 0o644
