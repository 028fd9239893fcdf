"""The entries of a NeXus/HDF5 file, and which one to read.

Beamlines often write one file per scan with one ``NXentry`` per technique: fluorescence,
absorption and diffraction side by side. :func:`list_entries` says what each entry holds and
which reader understands it (``nexus`` for NXtomo, ``xrdct`` for XRD-CT sinograms, ``pencil``
for pencil-beam absorption); :func:`read_entry` reads the entry ``input.entry`` names, or else
the first one a reader understands (an entry whose read fails is skipped with a warning), and
says on the console what the file holds and which entry it reads. A file with one entry is read
as before.

An entry whose definition, title or data path says fluorescence (``fluo``, ``xrf``, ``mca``)
or raw diffraction (``diffraction``, ``xrd``, ``saxs``, ``waxs``) is not read as absorption,
even when its layout looks like a pencil-beam scan; reduced XRD-CT sinograms are read as such.
With an explicit ``input.format`` and ``input.entry`` that reader reads that entry, whatever
the classification says.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..logs import summary
from .base import RawScan
from .diffraction import find_nxdata, pencil_entry
from .errors import ScanError
from .hdf5 import data_candidates, entries, entry_path, find_image_key, get, is_frames, open_h5

__all__ = ["Entry", "list_entries", "read_entry"]

log = logging.getLogger(__name__)

#: Words in an entry's definition, title or data path that name a technique no reader reads.
_TECHNIQUES = (("fluorescence", ("fluo", "xrf", "mca", "xfm")),
               ("diffraction", ("diffraction", "xrd", "saxs", "waxs")))
_WHAT = {"nexus": "NXtomo", "xrdct": "XRD-CT", "pencil": "pencil-beam absorption"}


@dataclass(frozen=True)
class Entry:
    """One entry of a file: its path, the reader that understands it (None: none) and what it holds."""

    path: str
    format: str | None
    what: str

    @property
    def line(self) -> str:
        """``entry /entry1: NXtomo 181 x 2 x 640 (readable)`` or ``entry /entry2: fluorescence, no reader``."""
        if self.format:
            return f"entry {self.path}: {self.what} (readable)"
        return f"entry {self.path}: {self.what}, no reader"

    @property
    def short(self) -> str:
        return f"{self.path} ({self.what}{'' if self.format else ', no reader'})"


def _text(obj: Any) -> str:
    if obj is None:
        return ""
    try:
        v = obj[()] if hasattr(obj, "shape") else obj
    except (OSError, TypeError, ValueError):
        return ""
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray):
        return " ".join(x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in v.reshape(-1))
    return str(v)


def _technique(*texts: str) -> str | None:
    low = " ".join(texts).lower()
    for name, words in _TECHNIQUES:
        if any(w in low for w in words):
            return name
    return None


def _shape(shape: Any) -> str:
    return " x ".join(str(int(n)) for n in shape)


def _classify(f: Any, entry: str) -> Entry:
    eg = get(f, entry)
    definition = _text(get(eg, "definition")) if eg is not None else ""
    title = _text(get(eg, "title")) if eg is not None else ""
    tag = _technique(definition, title, entry)
    hit = find_nxdata(f, entry)
    if hit is not None:
        gname, axes = hit
        sig = f[gname].attrs.get("signal")
        sig = sig.decode() if isinstance(sig, bytes) else str(sig)
        return Entry(entry, "xrdct", f"XRD-CT {_shape(f[gname][sig].shape)} [{', '.join(axes)}]")
    pencil = pencil_entry(f, entry)
    if pencil is not None:
        if tag or _technique(pencil["data"]):
            return Entry(entry, None, tag or _technique(pencil["data"]) or "")
        return Entry(entry, "pencil", f"{_WHAT['pencil']} {_shape(f[pencil['data']].shape)}")
    nxtomo = "nxtomo" in definition.lower()
    for cand in data_candidates(f, entry):
        ds = get(f, cand)
        if not is_frames(ds):
            continue
        key = find_image_key(f, entry, cand, ds)
        if key is None:
            continue
        if not nxtomo and (tag or _technique(cand)):
            return Entry(entry, None, tag or _technique(cand) or "")
        try:
            n = int((np.asarray(f[key][()]).reshape(-1) == 0).sum())
        except (OSError, TypeError, ValueError):
            n = int(ds.shape[0])
        return Entry(entry, "nexus", f"NXtomo {_shape((n, *ds.shape[1:]))}")
    return Entry(entry, None, tag or (f"{definition}" if definition else "no tomography data"))


def list_entries(path: str | PathLike[str]) -> list[Entry]:
    """The file's entries (``NXentry`` groups, every top-level group when none is marked), in
    order, each with the reader that understands it and what it holds.

    Raises
    ------
    ScanError
        When the file is missing or not readable HDF5.
    """
    p = Path(path)
    out = []
    with open_h5(p) as f:
        for e in entries(f):
            try:
                out.append(_classify(f, e))
            except (KeyError, OSError, RuntimeError, TypeError, ValueError) as exc:
                out.append(Entry(e, None, f"unreadable ({exc})"))
    return out


def _match(listing: list[Entry], entry: str) -> Entry | None:
    want = entry_path(entry)
    return next((e for e in listing if e.path == want), None)


def _entry_error(p: Path, entry: str, listing: list[Entry], why: str) -> ScanError:
    return ScanError(p, None, f"input.entry to name an entry a reader understands (its entries: "
                     f"{'; '.join(e.short for e in listing) or 'none'})", f"{entry!r}, {why}")


def read_entry(path: str | PathLike[str], fmt: str | None, entry: str | None,
               read: Callable[[str, str | None], RawScan], detected: str) -> RawScan:
    """Read one entry of an HDF5 file (see the module docstring).

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    fmt : str or None
        The format the user chose (``input.format``), or None when it was detected.
    entry : str or None
        ``input.entry``: the entry to read (``/entry2`` or ``entry2``), or None for the first
        one a reader understands.
    read : callable
        ``read(format, entry)`` -> :class:`RawScan`: the reader of that format, on that entry
        (``entry`` None: the reader's own search of the whole file).
    detected : str
        The format detected from the file as a whole (read with it when the file has one entry).

    Raises
    ------
    ScanError
        An ``entry`` that the file lacks, or that no reader understands (the message lists the
        entries); a file none of whose entries a reader understands; the reader's errors.
    """
    p = Path(path)
    if entry is None:
        with open_h5(p) as f:
            several = len(entries(f)) > 1
        if not several:
            return read(fmt or detected, None)
    listing = list_entries(p)
    for e in listing:
        log.info("%s: %s", p, e.line)
    if entry is not None:
        chosen = _match(listing, entry)
        if chosen is None:
            raise _entry_error(p, entry, listing, "which the file does not have")
        if fmt is None and chosen.format is None:
            raise _entry_error(p, entry, listing, f"which holds {chosen.what} that no reader reads")
    if len(listing) > 1:
        summary(log, f"{p.name}: {len(listing)} entries")
        for e in listing:
            summary(log, f"  {e.line}")
    if entry is not None:
        raw = read(fmt or chosen.format, chosen.path)
        if len(listing) > 1:
            summary(log, f"{p.name}: reading entry {chosen.path} ({chosen.what}), as input.entry says")
        return raw
    cands = [e for e in listing if e.format and (fmt is None or e.format == fmt)]
    if not cands:
        if fmt is not None:
            return read(fmt, None)  # the reader searches the file itself (and says what it misses)
        raise ScanError(p, None, "an entry that a reader understands (NXtomo, XRD-CT sinograms or pencil-beam "
                        "absorption)", "; ".join(e.short for e in listing) or "no entries")
    first: ScanError | None = None
    for e in cands:
        try:
            raw = read(e.format, e.path)
        except ScanError as exc:
            log.warning("%s: entry %s (%s) not read: %s", p.name, e.path, e.what, exc)
            first = first or exc
            continue
        summary(log, f"{p.name}: reading entry {e.path} ({e.what}); set input.entry to read another")
        return raw
    assert first is not None
    raise first
