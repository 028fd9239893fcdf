"""The comparison benchmark's checks and time savings (benchmarks/compare.py), from made-up rows."""

from benchmarks.compare import checks, n2i_time_to, time_saved


def test_benchmark_checks_and_time_saved_from_rows():
    snaps = [{"psnr": 10.0, "train_seconds": 10.0}, {"psnr": 14.0, "train_seconds": 20.0}]
    rows = [{"label": "n2i", "method": "n2i", "status": "ok", "psnr": 16.0, "train_seconds": 40.0, "params": {},
             "snapshots": snaps},
            {"label": "sbd", "method": "sbd", "status": "ok", "psnr": 12.0, "train_seconds": 5.0,
             "params": {"pretrain_seconds": 5.0}, "snapshots": []},
            {"label": "gaintuning", "method": "gaintuning", "status": "ok", "psnr": 15.0, "train_seconds": 2.0,
             "params": {"pretrain_seconds": 6.0}, "snapshots": []},
            {"label": "bm3d", "method": "bm3d", "status": "ok", "psnr": 17.0, "params": {}, "snapshots": []}]
    assert n2i_time_to(rows, 12.0) == (15.0, True)  # half-way between the snapshots
    assert n2i_time_to(rows, 9.0) == (10.0, False)  # reached before the first: an upper bound
    assert n2i_time_to(rows, 20.0) == (None, False)
    sbd, gt = time_saved(rows)
    assert sbd["on_scan_seconds"] == 0.0 and sbd["saved_reused"] == 15.0 and sbd["saved_with_pretraining"] == 10.0
    assert gt["n2i_seconds_to_same_psnr"] == 30.0 and gt["saved_reused"] == 28.0
    verdict = {c["check"]: c["pass"] for c in checks(rows)}
    assert verdict["n2i > bm3d"] is False and verdict["X:1 > 1:X"] is None  # no 1:X row: not judged
