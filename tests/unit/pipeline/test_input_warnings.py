"""Input that is legal but almost surely wrong is warned about, once, and goes on (issue 21, item 4).

Duplicated angles, an angle span that is neither about 180 nor about 360 degrees (static
scans), fewer than 8 projections per split. Each warning is one sentence in the store's
``preprocess`` attributes and on the console of ``tomodenoise check``. (A batch larger than
the training items: ``tests/unit/train/test_recipe.py``.)
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from tomodenoise import pipeline
from tomodenoise.cli import main
from tomodenoise.config import RunConfig
from tomodenoise.io.dxchange import read_dxchange, write_dxchange
from tomodenoise.pipeline.modalities import MIN_PROJECTIONS_PER_SPLIT, splits_warning
from tomodenoise.simulate.scan import simulate_foam_scan


@pytest.fixture(scope="module")
def foam(tmp_path_factory) -> Path:
    """A tiny foam scan of 128 angles over half a turn (end angle left out)."""
    d = tmp_path_factory.mktemp("warnings")
    return simulate_foam_scan(d / "foam.h5", size=16, n_angles=128, n_slices=2, i0=200.0, seed=3, n_spheres=5)["scan"]


def _with_angles(foam: Path, out: Path, angles: np.ndarray) -> Path:
    raw = read_dxchange(foam)
    return write_dxchange(out, raw.projections, raw.flats, raw.darks, angles)


def _ingest(path: Path, out: Path, caplog, **splits) -> tuple[list[str], dict]:
    """Ingest ``path``; the warnings logged, and the store's preprocess attributes."""
    cfg = RunConfig()
    cfg.input.path, cfg.output.root = str(path), str(out)
    cfg.preprocess.center = 7.5
    for key, value in splits.items():
        setattr(cfg.splits, key, value)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tomodenoise"):
        store = pipeline.ingest(cfg)
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    return logged, store.attrs["preprocess"]


def test_duplicated_angles_are_warned_about_once_and_ingested(foam, tmp_path, caplog):
    angles = np.deg2rad(np.linspace(0, 180, 128, endpoint=False))
    angles[[20, 40, 60, 80]] = angles[[19, 39, 59, 79]]  # still increasing: no sorting
    logged, attrs = _ingest(_with_angles(foam, tmp_path / "dup.h5", angles), tmp_path / "out", caplog)
    assert len(logged) == 1 and logged == attrs["warnings"]
    assert "4 projections repeat the angle of another (e.g. 26.7188 deg 2 times)" in logged[0]
    assert "check the angles file (input.angles_file) or input.angles_unit" in logged[0]
    # the store is written; a rerun skips the ingest and says nothing again
    assert _ingest(tmp_path / "dup.h5", tmp_path / "out", caplog)[0] == []


def test_an_unusual_angle_span_is_warned_about_once_and_ingested(foam, tmp_path, caplog):
    angles = np.deg2rad(np.linspace(0, 97, 128))
    logged, attrs = _ingest(_with_angles(foam, tmp_path / "span.h5", angles), tmp_path / "out", caplog)
    assert logged == attrs["warnings"] == [
        f"{tmp_path / 'span.h5'}: the 128 angles span 97 degrees: a static scan normally covers about 180 or 360, "
        "so the angles or their unit are probably wrong; check input.angles_unit or the angles file "
        "(input.angles_file)"]


def test_the_standard_half_turn_is_not_warned_about(foam, tmp_path, caplog):
    logged, attrs = _ingest(foam, tmp_path / "out", caplog)
    assert logged == [] and attrs["warnings"] == []


def test_few_projections_per_split_are_warned_about_once_by_check_and_ingest(foam, tmp_path, caplog, capsys):
    out = tmp_path / "out"
    assert main(["check", str(foam), "--out", str(out), "--set", "splits.k=64", "--set", "preprocess.center=7.5"]) == 0
    err = capsys.readouterr().err
    message = ("splits.k = 64 leaves 2 projections per split (fewer than 8): each split's FBP is mostly streaks; "
               "use fewer splits")
    assert err.count(message) == 1 and not out.exists()
    logged, attrs = _ingest(foam, out, caplog, k=64)
    assert logged == attrs["warnings"] == [message]
    assert _ingest(foam, tmp_path / "o16", caplog, k=16)[0] == []  # 8 a split: enough


def test_splits_warning_for_a_dynamic_scan_names_its_shortest_step():
    assert splits_warning(4, 12, dynamic=True) == (
        "splits.k = 4 leaves 3 projections per split in the shortest time step (fewer than 8): each split's FBP is "
        "mostly streaks; use fewer splits or longer time steps")
    assert splits_warning(4, 4 * MIN_PROJECTIONS_PER_SPLIT) is None
    assert splits_warning(8, 7) is None  # more splits than projections: refused by the ingest, not warned about
    assert splits_warning(2, 3) == ("splits.k = 2 leaves 1 projection per split (fewer than 8): each split's FBP is "
                                    "mostly streaks; use fewer splits")
