"""The demo, shrunk (--quick), through the Prefect flow: both scans, a table, previews."""

import contextlib
import io

from tomodenoise.cli import run_flow
from tomodenoise.demo import run_demo


def test_quick_demo_runs_both_scans(tmp_path):
    # Not capsys: see conftest.py (a per-test stream must not outlive the test in a handler).
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rows = run_demo(tmp_path, runner=run_flow, quick=True)
    out = buf.getvalue()
    assert [r["scan"] for r in rows] == ["foam (simulated)", "tooth (real, APS)"]
    assert rows[0]["psnr_fbp"] is not None and rows[1]["psnr_fbp"] is None
    assert all(r["previews"] for r in rows)
    assert "| foam (simulated) |" in out and "preview_z" in out
    for name in ("foam", "tooth"):
        assert (tmp_path / name / "scan.zarr" / "zarr.json").exists()
        assert (tmp_path / name / "report" / "metrics.json").exists()
