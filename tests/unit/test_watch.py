"""The watcher's core: finding settled scans, claiming each exactly once, retrying failed runs."""

import json
import os
import threading
import time
from datetime import datetime

import pytest

from tomodenoise.paths import PathNotAllowed, confine, input_roots
from tomodenoise.watch import Claim, backoff_delay, claim, find_scans, list_claims, scan_identity, status_rows


def _touch(p, data=b"x", age=3600):
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    t = os.stat(p).st_mtime - age
    os.utime(p, (t, t))
    return p


def test_find_scans_matches_patterns_recursively_and_waits_for_settled_files(tmp_path):
    a = _touch(tmp_path / "a.h5")
    b = _touch(tmp_path / "sub" / "b.nxs")
    _touch(tmp_path / "notes.txt")
    _touch(tmp_path / ".hidden.h5")
    fresh = _touch(tmp_path / "being_written.h5", age=0)
    found = find_scans([tmp_path], min_age_s=60)
    assert found == sorted([a.resolve(), b.resolve()])
    assert fresh.resolve() in find_scans([tmp_path], min_age_s=0)
    with pytest.raises(FileNotFoundError):
        find_scans([tmp_path / "missing"])


def test_a_scan_is_claimed_once_even_by_concurrent_watchers(tmp_path):
    scan = _touch(tmp_path / "in" / "s.h5")
    claims = tmp_path / "claims"
    results = []
    barrier = threading.Barrier(8)

    def worker():
        barrier.wait()
        results.append(claim(scan, claims))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [c for c in results if c is not None]
    assert len(winners) == 1
    assert claim(scan, claims) is None
    winners[0].record(flow_run_id="abc")
    assert '"flow_run_id": "abc"' in winners[0].file.read_text()


def test_a_released_or_rewritten_scan_is_claimed_again(tmp_path):
    scan = _touch(tmp_path / "s.h5")
    c = claim(scan, tmp_path / "claims")
    c.release()
    assert claim(scan, tmp_path / "claims") is not None
    old = scan_identity(scan)
    _touch(scan, data=b"new contents", age=10)
    assert scan_identity(scan) != old
    assert claim(scan, tmp_path / "claims") is not None


def test_paths_are_confined_to_the_input_roots(tmp_path, monkeypatch):
    root = tmp_path / "raw"
    inside = _touch(root / "x" / "s.h5")
    outside = _touch(tmp_path / "elsewhere.h5")
    monkeypatch.setenv("TOMODENOISE_INPUT_ROOTS", str(root))
    assert input_roots() == [root.resolve()]
    assert confine(inside) == inside.resolve()
    with pytest.raises(PathNotAllowed, match="TOMODENOISE_INPUT_ROOTS"):
        confine(outside)
    with pytest.raises(PathNotAllowed):
        confine(root / ".." / "elsewhere.h5")  # no climbing out with ..
    link = root / "link.h5"
    link.symlink_to(outside)
    with pytest.raises(PathNotAllowed):
        confine(link)  # nor through a symlink
    monkeypatch.setenv("TOMODENOISE_INPUT_ROOTS", "")
    assert confine(outside) == outside.resolve()  # unset: a scientist's own machine


def _at(iso):
    return datetime.fromisoformat(iso).timestamp()


def test_backoff_doubles_per_attempt():
    assert [backoff_delay(n, 30) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert backoff_delay(1, 0) == 0 and backoff_delay(3, 10, factor=3) == 90


def test_a_failing_scan_is_retried_with_backoff_then_marked_failed_with_the_reason(tmp_path):
    c = claim(_touch(tmp_path / "s.h5"), tmp_path / "claims")
    assert c.read()["status"] == "starting" and c.begin_attempt() is None  # being submitted
    c.started(1, "run-1")
    d = c.finish_attempt("run-1", "FAILED", "boom 1", max_retries=2, retry_backoff_s=10, now=1000)
    assert d["status"] == "retrying"
    d = c.read()
    assert d["attempt"] == 1 and _at(d["next_attempt_at"]) == 1010 and d["reason"] == "boom 1"
    assert c.begin_attempt(now=1009) is None  # not due yet
    assert c.begin_attempt(now=1010) == 2
    assert c.begin_attempt(now=1010) is None  # taken
    c.started(2, "run-2")
    c.finish_attempt("run-2", "CRASHED", "worker lost", max_retries=2, retry_backoff_s=10, now=2000)
    assert _at(c.read()["next_attempt_at"]) == 2020  # doubled
    assert c.begin_attempt(now=2020) == 3
    c.started(3, "run-3")
    d = c.finish_attempt("run-3", "MISSING", "flow run run-3 no longer exists", max_retries=2,
                         retry_backoff_s=10, now=3000)
    assert d["status"] == "failed" and d["reason"] == "flow run run-3 no longer exists"
    assert "next_attempt_at" not in d
    assert [(h["attempt"], h["flow_run_id"], h["state"], h["message"]) for h in d["history"]] == [
        (1, "run-1", "FAILED", "boom 1"), (2, "run-2", "CRASHED", "worker lost"),
        (3, "run-3", "MISSING", "flow run run-3 no longer exists")]
    assert c.begin_attempt(now=10**10) is None and c.give_up("failed", "again") is None  # final
    assert claim(c.scan, tmp_path / "claims") is None  # and the unchanged file is not claimed again
    row, = status_rows([c.read()], max_retries=2)
    assert row["status"] == "failed: flow run run-3 no longer exists" and row["attempt"] == "3/3"
    assert row["flow_run_id"] == "run-3" and row["runs"] == "run-1, run-2, run-3"


def test_completed_and_cancelled_runs_are_final_and_no_retries_means_one_attempt(tmp_path):
    a, b, z = (claim(_touch(tmp_path / f"{n}.h5", data=n.encode()), tmp_path / "claims") for n in "abz")
    for n, c in enumerate((a, b, z)):
        c.started(1, f"run-{n}")
    assert a.finish_attempt("someone-else", "FAILED", "x", 3, 0) is None  # not this claim's run
    assert a.finish_attempt("run-0", "COMPLETED", None, 3, 0)["status"] == "completed"
    assert a.finish_attempt("run-0", "FAILED", "late", 3, 0) is None  # recorded once
    assert b.finish_attempt("run-1", "CANCELLED", "stopped by hand", 3, 0)["status"] == "cancelled"
    assert z.finish_attempt("run-2", "FAILED", "boom", max_retries=0, retry_backoff_s=0)["status"] == "failed"
    assert all(c.begin_attempt(now=10**10) is None for c in (a, b, z))
    assert {c.id: c.read()["status"] for c in list_claims(tmp_path / "claims")} == {
        a.id: "completed", b.id: "cancelled", z.id: "failed"}


def test_a_run_stopped_by_sigterm_is_retried_like_a_crash(tmp_path):
    from tomodenoise.watch import STOPPED_BY_SIGTERM

    c = claim(_touch(tmp_path / "s.h5"), tmp_path / "claims")
    c.started(1, "run-1")
    d = c.finish_attempt("run-1", "CANCELLED", f"{STOPPED_BY_SIGTERM}; run it again to resume", 3, 0)
    assert d["status"] == "retrying" and c.begin_attempt(now=10**10) == 2


def test_two_updaters_record_one_outcome_and_start_each_attempt_once(tmp_path):
    c = claim(_touch(tmp_path / "s.h5"), tmp_path / "claims")
    c.started(1, "run-1")
    barrier = threading.Barrier(8)
    outcomes, attempts = [], []

    def watcher():  # eight overlapping watcher passes see the same failed run
        other = Claim.load(c.file)
        barrier.wait()
        outcomes.append(other.finish_attempt("run-1", "FAILED", "boom", max_retries=3, retry_backoff_s=0))
        attempts.append(other.begin_attempt())

    threads = [threading.Thread(target=watcher) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(o is not None for o in outcomes) == 1
    assert [a for a in attempts if a is not None] == [2]
    d = c.read()
    assert d["status"] == "starting" and d["attempt"] == 2 and len(d["history"]) == 1
    assert list(tmp_path.joinpath("claims").glob("*.tmp")) == []


def test_a_stale_or_failed_submission_is_handed_out_again_with_the_same_attempt(tmp_path):
    c = claim(_touch(tmp_path / "s.h5"), tmp_path / "claims")
    now = time.time()
    assert c.begin_attempt(now=now + 5) is None  # another watcher is submitting it right now
    assert c.begin_attempt(now=now + 3600) == 1  # it died before recording the run: send again
    c.abort_attempt(1, "ConnectionError('server down')", now=now + 3600)
    d = c.read()
    assert d["status"] == "retrying" and "server down" in d["submit_error"]
    assert c.begin_attempt(now=now + 3600) == 1  # the next pass sends attempt 1 again (same key)


def test_a_claim_written_before_retries_existed_reads_as_running(tmp_path):
    f = tmp_path / "claims" / "abc.json"
    f.parent.mkdir()
    f.write_text(json.dumps({"scan": "/data/s.h5", "claimed": "2024-01-01T00:00:00+00:00", "flow_run_id": "r"}))
    (c,) = list_claims(f.parent)
    assert (c.id, str(c.scan)) == ("abc", "/data/s.h5")
    d = c.read()
    assert (d["status"], d["attempt"], d["history"]) == ("running", 1, [])
    assert c.finish_attempt("r", "FAILED", "boom", 1, 60, now=0)["status"] == "retrying"
    assert status_rows([c.read()])[0]["status"] == "retrying at 1970-01-01T00:01:00+00:00 (after: boom)"
