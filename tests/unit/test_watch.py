"""The watcher's core: finding settled scans and claiming each exactly once."""

import os
import threading

import pytest

from tomodenoise.paths import PathNotAllowed, confine, input_roots
from tomodenoise.watch import claim, find_scans, scan_identity


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
