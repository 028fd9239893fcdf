"""Everything a run would refuse is refused by check and by run before the store exists (issue 21, item 2)."""

import shutil
from collections import namedtuple

import numpy as np
import pytest

from tomodenoise.cli import main
from tomodenoise.simulate.scan import simulate_foam_scan


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    d = tmp_path_factory.mktemp("preflight")
    return simulate_foam_scan(d / "foam.h5", size=24, n_angles=32, n_slices=2, i0=200.0, seed=6, n_spheres=30)


def _no_store(out):
    return not list(out.rglob("scan.zarr")) and not list(out.rglob("*.lock"))


@pytest.mark.parametrize("cmd", ["check", "run"])
def test_a_centre_off_the_detector_is_refused_before_writing(scan, tmp_path, capsys, cmd):
    out = tmp_path / "out"
    extra = ["--no-prefect"] if cmd == "run" else []
    assert main([cmd, str(scan["scan"]), "--out", str(out), "--set", "preprocess.center=500", *extra]) == 2
    err = capsys.readouterr().err
    assert "preprocess.center = 500 lies outside the detector (columns 0..23)" in err
    assert _no_store(out)


def test_a_reference_of_the_wrong_shape_is_refused_before_writing(scan, tmp_path, capsys):
    out, ref = tmp_path / "out", tmp_path / "ref.npy"
    np.save(ref, np.zeros((3, 24, 24), np.float32))  # the scan has 2 slices
    assert main(["run", str(scan["scan"]), "--out", str(out), "--no-prefect", "--reference", str(ref)]) == 2
    assert "reference shape (3, 24, 24) does not match" in capsys.readouterr().err
    assert _no_store(out)


def test_a_disk_without_room_for_the_store_is_refused(scan, tmp_path, capsys, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    out = tmp_path / "out"
    for cmd in (["check"], ["run", "--no-prefect"]):
        assert main([cmd[0], str(scan["scan"]), "--out", str(out), *cmd[1:]]) == 2
        assert "MiB free: free some space or set output.root to a larger disk" in capsys.readouterr().err
    assert _no_store(out)
