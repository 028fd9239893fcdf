"""What a scientist sees: the demo's foam part as a user runs it, on its own embedded server.

The console is short and has no traceback; the run log has everything, and no error; exactly
one Prefect server runs (the Dask workers report to it instead of starting their own).
"""

from __future__ import annotations

import json
import time

import pytest

import _cli


@pytest.mark.slow
def test_demo_foam_is_quiet_with_one_server_and_a_full_run_log(tmp_path):
    out = tmp_path / "demo"
    proc = _cli.start(["demo", "--quick", "--scans", "foam", "--out", str(out)], tmp_path)
    most_servers, seen = 0, set()
    try:
        while proc.poll() is None:
            procs = _cli.descendants(proc)
            servers = _cli.prefect_servers(procs)
            most_servers = max(most_servers, len(servers))
            seen.update(p.pid for p in servers)
            time.sleep(0.2)
        rc = proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = _cli.console(tmp_path)
    assert rc == 0, text[-3000:]
    assert most_servers == 1 and len(seen) == 1, f"{most_servers} Prefect servers at once, {len(seen)} in all"

    lines = text.replace("\r", "").splitlines()
    assert len(lines) < 60, text
    first = (tmp_path / "cli.err").read_text().splitlines()[0]  # the status lines go to stderr
    assert first.startswith("Prefect: embedded server at http://127.0.0.1:"), first
    for bad in ("Traceback", "database is locked", "ERROR", "error:", "Failed to send telemetry"):
        assert bad not in text, f"{bad!r} on the console:\n{text}"
    for stage in ("ingest", "reconstruct", "train", "denoise", "report"):
        assert any(line.startswith(stage + " ") for line in lines), f"no summary line for {stage}:\n{text}"
    assert "| foam (simulated) |" in text and "preview_z" in text
    # Dask's and Prefect's INFO records are not on the console: they are in the run log, once each.
    assert "distributed.scheduler" not in text and "Finished in state" not in text

    run_log = (out / "foam" / "report" / "run.log").read_text()
    for bad in ("Traceback", "database is locked", "ERROR", "Failed to send telemetry"):
        assert bad not in run_log, f"{bad!r} in run.log"
    assert "distributed.scheduler" in run_log and "Dask Worker process" in run_log
    assert "Finished in state Completed()" in run_log
    begun = [line for line in run_log.splitlines() if "Beginning flow run" in line]
    assert len(begun) == 1, begun  # each Prefect record once
    assert json.loads((out / "foam" / "report" / "metrics.json").read_text())["denoised"]["psnr"] > 0
    assert _cli.wait_gone(_cli.descendants(proc), 5) == []
