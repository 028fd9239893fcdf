"""The readers' registry: one Reader per format, dispatch and detection through it, and
helper modules that import no reader (no import circle in tomodenoise.io)."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import h5py
import numpy as np
import pytest

import tomodenoise.io as io
from tomodenoise.config import InputConfig
from tomodenoise.io import FORMATS, RawScan, ScanError, detect_format, read_scan, registry
from tomodenoise.io.dxchange import write_dxchange
from tomodenoise.io.registry import READERS, Reader, claimed_by, find_reader

IO = Path(io.__file__).parent
READER_MODULES = {"arrays", "diffraction", "dxchange", "entries", "nexus", "registry", "tiff"}


def test_every_format_has_one_reader_and_the_config_accepts_each():
    names = [r.name for r in READERS]
    assert len(set(names)) == len(names) and tuple(names) == FORMATS
    literal = typing.get_args(InputConfig.model_fields["format"].annotation)
    assert set(literal) == {"auto", *FORMATS}
    aliases = [a for r in READERS for a in r.aliases]
    assert len(set(aliases)) == len(aliases) and not set(aliases) & set(FORMATS)


def test_find_reader_resolves_names_and_aliases_in_any_case():
    assert find_reader("NeXus").name == "nexus"
    assert find_reader("dx").name == "dxchange" and find_reader("tif").name == "tiff"
    assert find_reader("arrays").name == "npy"
    assert find_reader("bogus") is None and find_reader("auto") is None


def test_read_scan_dispatches_through_the_registry(tmp_path, monkeypatch):
    calls = []

    def read_fake(path, **kw):
        calls.append((path, kw))
        return RawScan(np.ones((4, 1, 16), np.float32), None, None, np.linspace(0, np.pi, 4), source=str(path))

    fake = Reader("fake", read_fake, lambda p: p.suffix == ".fake", aliases=("fk",))
    monkeypatch.setattr(registry, "READERS", (*READERS, fake))
    scan = tmp_path / "s.fake"
    scan.write_text("x")
    assert detect_format(scan) == "fake"
    raw = read_scan(scan, format="FK", slices=(0, 1))
    assert raw.projections.shape == (4, 1, 16)
    assert calls[-1][1]["slices"] == (0, 1)
    read_scan(scan)
    assert len(calls) == 2


def test_unknown_format_and_entry_for_a_format_without_entries(tmp_path):
    p = tmp_path / "dx.h5"
    write_dxchange(p, np.ones((4, 2, 16), np.uint16), None, None, np.linspace(0, np.pi, 4))
    with pytest.raises(ValueError, match="unknown scan format 'bogus': use 'auto' or one of dxchange, nexus, tiff"):
        read_scan(p, format="bogus")
    with pytest.raises(ScanError, match="found a dxchange scan and input.entry '/entry1'"):
        read_scan(p, entry="/entry1")


def test_detection_asks_file_name_readers_before_hdf5_layouts(tmp_path):
    # An HDF5 file named .tif is claimed by the TIFF reader (as the suffix says), unless the
    # format is "hdf5", which asks only the HDF5 layouts.
    p = tmp_path / "dx.tif"
    write_dxchange(p, np.ones((4, 2, 16), np.uint16), None, None, np.linspace(0, np.pi, 4))
    assert claimed_by(p).name == "tiff"
    assert claimed_by(p, hdf5_only=True).name == "dxchange"
    assert read_scan(p, format="hdf5").attrs["format"] == "dxchange"


def test_fallback_readers_come_last(tmp_path):
    p = tmp_path / "plain.nxs"  # an HDF5 file with no known layout: NeXus by its name
    with h5py.File(p, "w") as f:
        f.create_group("foo")
    assert detect_format(p) == "nexus"
    q = tmp_path / "other.h5"
    with h5py.File(q, "w") as f:
        f.create_group("foo")
    with pytest.raises(ScanError, match="expected a Data Exchange file"):
        detect_format(q)
    t = tmp_path / "text.nxs"
    t.write_text("not HDF5")
    with pytest.raises(ScanError, match="expected a readable HDF5 file"):
        detect_format(t)


def _imports(module: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("helper", ["base", "checks", "errors", "fields", "files", "hdf5"])
def test_helper_modules_import_no_reader(helper):
    assert not _imports(IO / f"{helper}.py") & READER_MODULES
