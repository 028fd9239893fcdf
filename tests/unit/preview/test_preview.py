"""The centre-of-rotation preview (``tomodenoise preview``; ``report/preview_centre.png`` of a run)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tomodenoise.cli import main
from tomodenoise.config import RunConfig
from tomodenoise.io.dxchange import write_dxchange
from tomodenoise.preview import OFFSETS, PREVIEW_NAME, REMEDY, centre_preview, scan_rows, store_preview
from tomodenoise.simulate.ellipses import ellipse_sinogram

WIDTH, N_ANGLES, TRUE_CENTRE, I0 = 96, 180, 49.3, 3000.0  # the axis 1.8 px right of the middle (47.5)


def _phantom(seed: int = 0) -> np.ndarray:
    """A disk with small voids and inclusions (sharp edges for the centre to blur)."""
    rng = np.random.default_rng(seed)
    rows = [(1.0, 0.0, 0.0, 40.0, 38.0, 0.3)]
    for _ in range(30):
        rho, phi = 34 * np.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
        a = rng.uniform(1.5, 4.5)
        rows.append((rng.choice([-0.9, 0.8]), rho * np.cos(phi), rho * np.sin(phi), a, a * rng.uniform(0.6, 1), 0.0))
    return np.array(rows)


def _lines(angles: np.ndarray) -> np.ndarray:
    s = ellipse_sinogram(_phantom(), angles, WIDTH, supersampling=2, center=TRUE_CENTRE)
    return s * np.float32(1.5 / s.max())  # at most ~78 % absorbed


def _write_scan(path: Path, n_rows: int = 4, seed: int = 1) -> Path:
    """Raw counts (Poisson, I0 photons), flats and darks of an off-centre scan in Data Exchange."""
    angles = np.linspace(0, np.pi, N_ANGLES, endpoint=False)
    expected = I0 * np.exp(-_lines(angles))
    rng = np.random.default_rng(seed)
    counts = np.stack([rng.poisson(expected) for _ in range(n_rows)], axis=1).astype(np.float32)  # angle z det
    flats = np.full((2, n_rows, WIDTH), I0, dtype=np.float32)
    return write_dxchange(path, np.maximum(counts, 1), flats, np.zeros_like(flats), angles)


def _info(png: Path) -> dict:
    with Image.open(png) as img:
        assert img.width > 800 and img.height > 400  # a 2 x 4 grid
        return json.loads(img.text["tomodenoise"])


def _sharpness(img: np.ndarray) -> float:
    """Gradient energy within the reconstruction disk."""
    n = img.shape[-1]
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    gy, gx = np.gradient(img.astype(np.float64))
    return float(((gy ** 2 + gx ** 2)[yy ** 2 + xx ** 2 <= (0.45 * n) ** 2]).mean())


def _entropy(panels: np.ndarray) -> list[float]:
    """Histogram entropy of each panel within the disk, one range for all (lower = sharper)."""
    n = panels.shape[-1]
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    inside = yy ** 2 + xx ** 2 <= (0.45 * n) ** 2
    lo, hi = np.percentile(panels[:, inside], [0.5, 99.5])
    out = []
    for p in panels:
        h, _ = np.histogram(p[inside], 64, range=(lo - (hi - lo) / 2, hi + (hi - lo) / 2))
        q = h[h > 0] / h.sum()
        out.append(float(-(q * np.log(q)).sum()))
    return out


def test_centre_preview_panels_curve_and_sharpness():
    from tomodenoise.preprocess.center import find_center_info

    angles = np.linspace(0, np.pi, N_ANGLES, endpoint=False)
    rng = np.random.default_rng(3)
    sino = -np.log(np.maximum(rng.poisson(I0 * np.exp(-_lines(angles))), 1) / I0).astype(np.float32)
    c, info = find_center_info(sino, angles)
    assert abs(c - TRUE_CENTRE) < 0.5
    pv = centre_preview(sino, angles, c, method=info["center_method"], use_gpu="no")
    assert pv.panels.shape == (7, WIDTH, WIDTH)
    np.testing.assert_allclose(pv.centres, c + np.array(OFFSETS))
    assert pv.curve_centres.size == 9 and np.all(np.isfinite(pv.curve_scores))
    assert 0 < pv.sigma < 4
    sharp = [_sharpness(p) for p in pv.panels]
    i0 = OFFSETS.index(0.0)
    assert sharp[i0] > sharp[OFFSETS.index(-2.0)] and sharp[i0] > sharp[OFFSETS.index(2.0)]
    ent = _entropy(pv.panels)  # the doubled edges of a wrong centre spread the histogram
    assert ent[i0] == min(ent) and ent[i0] < 0.95 * min(ent[OFFSETS.index(-2.0)], ent[OFFSETS.index(2.0)])
    score = dict(zip(np.round(pv.curve_centres - c, 3), pv.curve_scores))
    assert score[0.0] < score[-2.0] and score[0.0] < score[2.0]
    assert abs(pv.curve_minimum - TRUE_CENTRE) <= 0.75


def test_cli_preview_writes_png_with_found_centre(tmp_path, capsys):
    scan = _write_scan(tmp_path / "scan.h5", n_rows=40)
    png = tmp_path / "out" / "centre.png"
    assert main(["preview", str(scan), "--out", str(png)]) == 0
    info = _info(png)
    assert abs(info["center"] - TRUE_CENTRE) < 0.5
    assert info["center_method"].startswith("found")
    assert len(info["panel_centres"]) == 7 and len(info["curve"]) == 9
    assert info["remedy"] == REMEDY and "--set preprocess.center=" in REMEDY
    assert info["z"] == 4 + 16  # the middle of the 32 central rows 4..36, which alone were read
    out = capsys.readouterr()
    assert f"centre of rotation {info['center']:.2f}" in out.out + out.err  # the console line


def test_cli_preview_given_centre_and_default_name(tmp_path, monkeypatch):
    scan = _write_scan(tmp_path / "given.h5")
    monkeypatch.chdir(tmp_path)
    assert main(["preview", str(scan), "--set", "preprocess.center=48.0", "--set", "input.slices=[1, 3]"]) == 0
    info = _info(tmp_path / f"given_{PREVIEW_NAME}")
    assert info["center"] == 48.0 and info["center_method"] == "given"
    assert info["panel_centres"][0] == 46.0 and info["z"] == 2


def test_cli_preview_bad_scan_path(tmp_path):
    assert main(["preview", str(tmp_path / "missing.h5"), "--out", str(tmp_path / "p.png")]) == 2
    assert not (tmp_path / "p.png").exists()


def test_scan_rows_without_reading(tmp_path):
    cfg = RunConfig()
    cfg.input.path = str(_write_scan(tmp_path / "rows.h5", n_rows=6))
    assert scan_rows(cfg) == (0, 6)
    cfg.input.slices = (2, 5)
    assert scan_rows(cfg) == (2, 5)


def test_store_preview_after_ingest_and_artifact(tmp_path):
    from tomodenoise.pipeline import ingest

    cfg = RunConfig()
    cfg.input.path = str(_write_scan(tmp_path / "run.h5"))
    cfg.output.root = str(tmp_path / "out")
    store = ingest(cfg)
    png = store_preview(store, cfg)
    assert png == store.report_dir / PREVIEW_NAME and png.exists()
    info = _info(png)
    assert info["center"] == pytest.approx(store.attrs["geometry"]["center"], abs=1e-3)
    assert json.loads(png.with_suffix(".json").read_text())["key"][1] == store.stage_info("ingest")["key"]
    mtime = png.stat().st_mtime_ns
    assert store_preview(store, cfg) == png and png.stat().st_mtime_ns == mtime  # same ingest: kept

    from tomodenoise.pipeline import invalidate_from

    (store.report_dir / "metrics.json").write_text("{}")
    invalidate_from(store, "reconstruct")  # what a fresh reconstruction does: the preview stays
    assert png.exists() and png.with_suffix(".json").exists()
    assert not (store.report_dir / "metrics.json").exists()

    from tasks.artifacts import centre_preview_markdown

    md = centre_preview_markdown(png)
    assert "data:image/png;base64," in md and "--set preprocess.center=<value>" in md
    invalidate_from(store, "ingest")  # a new ingest: a new centre, a new preview
    assert not png.exists()


def test_store_preview_never_fails_the_run(tmp_path):
    class Broken:
        report_dir = tmp_path / "report"
        root = tmp_path

        def stage_info(self, stage):
            raise OSError("store gone")

    assert store_preview(Broken(), RunConfig()) is None


def test_a_centre_away_from_the_curves_minimum_is_doubted():
    import numpy as np

    from tomodenoise.preview.compute import CentrePreview
    from tomodenoise.preview.sources import centre_doubt

    def pv(center, scores, method="vo+fbp-entropy"):
        c = np.arange(-2, 2.01, 0.5) + 312.0
        return CentrePreview(center=center, method=method, offsets=np.zeros(7), panels=np.zeros((7, 4, 4)),
                             sigma=1.0, curve_centres=c, curve_scores=np.asarray(scores, dtype=float))

    falling = np.linspace(1.0, 2.0, 9)  # lowest at the left edge, as on the TomoBank scan
    msg = centre_doubt(pv(312.0, falling))
    assert msg and "310.00" in msg and "edge of the curve" in msg and "preprocess.center" in msg
    v = np.abs(np.arange(9) - 4.0)  # lowest at the chosen centre
    assert centre_doubt(pv(312.0, v)) is None
    assert centre_doubt(pv(312.0, falling, method="given")) is None
