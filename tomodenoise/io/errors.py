"""The one error type of the readers: bad input, reported before anything is written."""

from __future__ import annotations

from os import PathLike
from typing import Any

__all__ = ["ScanError"]


class ScanError(ValueError):
    """Bad scan input: names the file, the dataset and what was expected.

    Every reader raises it for input it cannot use (missing or unreadable file, missing
    dataset, wrong shape, angles that do not match the projections, NaN/inf, unusable flat
    fields, ...), before anything is written.

    Parameters
    ----------
    path : str or os.PathLike
        The file (or folder) at fault.
    dataset : str or None
        The dataset, key or member inside it (``None`` when the file as a whole is at fault).
    expected : str
        What the reader expected to find, in words.
    found : Any, optional
        What it found instead (a shape, a value, an error message).
    hint : str, optional
        The remedy, in words (``"set input.angles_unit: rad"``), appended after the rest.

    The message is one sentence: ``<path>: dataset '<dataset>': expected <expected>;
    found <found>; <hint>``.

    Examples
    --------
    >>> raise ScanError("scan.h5", "/exchange/theta", "181 angles (one per projection)", 180)
    Traceback (most recent call last):
    ...
    tomodenoise.io.errors.ScanError: scan.h5: dataset '/exchange/theta': expected 181 angles (one per projection); found 180
    """

    def __init__(self, path: str | PathLike[str], dataset: str | None, expected: str, found: Any = None,
                 hint: str | None = None) -> None:
        self.path = str(path)
        self.dataset = dataset
        self.expected = expected
        self.found = found
        self.hint = hint
        where = f"dataset {dataset!r}" if dataset else "file"
        msg = f"{self.path}: {where}: expected {expected}"
        if found is not None:
            msg += f"; found {found}"
        if hint:
            msg += f"; {hint}"
        super().__init__(msg)

    def __reduce__(self):  # keep the fields when pickled (Dask, Prefect, multiprocessing)
        return (type(self), (self.path, self.dataset, self.expected, self.found, self.hint))
