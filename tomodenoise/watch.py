"""Finding new scans, claiming each exactly once, and retrying its failed runs (no Prefect).

A scan is *new* when no claim exists for its identity (resolved path, size, modification
time). Claims are files created with ``O_CREAT | O_EXCL`` under ``<output.root>/.claims/``:
the file system lets exactly one of two overlapping watchers create a given claim, so a
scan is never started twice, and a scan rewritten later (new identity) is started again.
A scan still being written (modified less than ``min_age_s`` ago) is left for a later pass.

The claim file (JSON) also follows the scan's runs. ``status`` is one of

- ``starting``: attempt ``attempt`` is being submitted (no run id yet);
- ``running``: ``flow_run_id`` is the run of attempt ``attempt``;
- ``retrying``: that run failed, crashed or vanished; attempt ``attempt + 1`` is due at
  ``next_attempt_at`` (the backoff doubles per attempt, see :func:`backoff_delay`);
- ``completed``, ``cancelled``, ``failed`` (retries exhausted; ``reason`` says why) and
  ``superseded`` (the file changed: the new identity has its own claim) are final: the
  claim is never touched again.

``history`` lists every finished attempt (attempt, run id, state, message). Every
read-modify-write of a claim file holds an exclusive ``flock`` on ``<id>.lock`` (released
by the kernel if the holder dies) and replaces the file atomically, and each transition
checks the state it starts from, so of two overlapping watchers exactly one records an
outcome or starts the next attempt.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

DEFAULT_PATTERNS = ("*.h5", "*.hdf5", "*.hdf", "*.nxs")
ACTIVE = ("starting", "running", "retrying")
# The start of the message of a run cancelled by SIGTERM (a worker or node shut down, a SLURM
# time limit): unlike a person's cancel from the UI, it is retried like a crash.
STOPPED_BY_SIGTERM = "stopped by SIGTERM"
RETRIED = ("FAILED", "CRASHED", "MISSING")  # run outcomes that are retried
STARTING_STALE_S = 600.0  # a submission unfinished this long is sent again (same key)
MAX_REASON = 500  # characters of a state message kept as the reason


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def _epoch(iso: str | None) -> float | None:
    return None if not iso else datetime.fromisoformat(iso).timestamp()


def backoff_delay(attempt: int, base_s: float, factor: float = 2.0) -> float:
    """Seconds to wait after attempt ``attempt`` (1-based) failed before the next one.

    Parameters
    ----------
    attempt : int
        The attempt that just failed (1 for the first run).
    base_s : float
        The delay after the first failure.
    factor : float
        Growth per attempt (2: the delay doubles).

    Returns
    -------
    float
        ``base_s * factor ** (attempt - 1)``.
    """
    return float(base_s) * float(factor) ** max(0, attempt - 1)


@dataclass(frozen=True)
class Claim:
    """One scan's claim file ``<claims_dir>/<id>.json``."""

    scan: Path
    id: str
    file: Path

    @classmethod
    def load(cls, file: str | os.PathLike) -> "Claim":
        """The claim stored in ``file`` (a ``<id>.json`` under the claims folder)."""
        f = Path(file)
        return cls(Path(json.loads(f.read_text() or "{}").get("scan", "")), f.stem, f)

    def release(self) -> None:
        """Give the scan back (the run could not be started): a later pass claims it again."""
        self.file.unlink(missing_ok=True)

    def read(self) -> dict[str, Any]:
        """The claim's contents, with ``status``, ``attempt`` and ``history`` always set.

        Claims written before retries existed read as attempt 1, ``running`` when they
        hold a ``flow_run_id`` and ``starting`` otherwise.
        """
        data = json.loads(self.file.read_text() or "{}")
        data.setdefault("status", "running" if data.get("flow_run_id") else "starting")
        data.setdefault("attempt", 1)
        data.setdefault("history", [])
        data.setdefault("started_at", data.get("claimed"))
        return data

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.file.with_suffix(".lock"), os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _write(self, data: dict[str, Any]) -> None:
        tmp = self.file.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.file)

    def update(self, change: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        """Apply ``change`` to the claim's contents under the claim's lock.

        Parameters
        ----------
        change : callable
            Edits the dict in place and returns True to write it, False to leave the file.

        Returns
        -------
        dict or None
            The contents written, or None when ``change`` declined (or the claim is gone).
        """
        with self._locked():
            try:
                data = self.read()
            except (FileNotFoundError, ValueError):  # released, or still being created
                return None
            if not change(data):
                return None
            data["updated"] = _iso(time.time())
            self._write(data)
            return data

    def record(self, **info: object) -> None:
        """Add what was started for this scan (e.g. the flow run id) to the claim file."""
        self.update(lambda d: d.update(info) or True)

    def started(self, attempt: int, flow_run_id: str, **info: object) -> dict[str, Any] | None:
        """Record that attempt ``attempt`` runs as ``flow_run_id`` (status ``running``)."""

        def change(d: dict[str, Any]) -> bool:
            if d["status"] not in ("starting", "running") or d["attempt"] != attempt:
                return False
            d.update(info, status="running", flow_run_id=flow_run_id)
            return True

        return self.update(change)

    def finish_attempt(self, flow_run_id: str, state: str, message: str | None, max_retries: int,
                       retry_backoff_s: float, now: float | None = None) -> dict[str, Any] | None:
        """Record how the run ``flow_run_id`` ended and decide what comes next.

        Parameters
        ----------
        flow_run_id : str
            The run that ended; nothing happens unless it is the claim's running attempt.
        state : str
            ``COMPLETED``, ``CANCELLED``, or one that is retried: ``FAILED``, ``CRASHED``,
            ``MISSING`` (the run no longer exists), and ``CANCELLED`` with a message starting
            :data:`STOPPED_BY_SIGTERM` (stopped by its machine, not by a person).
        message : str or None
            The final state's message: the reason recorded.
        max_retries : int
            Resubmissions allowed after the first run (``max_retries + 1`` attempts in all).
        retry_backoff_s : float
            The delay after the first failure, doubled per attempt (:func:`backoff_delay`).
        now : float, optional
            The time (epoch seconds); defaults to :func:`time.time`.

        Returns
        -------
        dict or None
            The new contents (``status`` completed, cancelled, retrying or failed), or None
            when another watcher recorded this outcome first.
        """
        now = time.time() if now is None else now
        state = state.upper()
        reason = (message or state.lower())[:MAX_REASON]

        def change(d: dict[str, Any]) -> bool:
            if d["status"] != "running" or d.get("flow_run_id") != flow_run_id:
                return False
            d["history"].append({"attempt": d["attempt"], "flow_run_id": flow_run_id, "state": state,
                                 "message": reason, "ended": _iso(now)})
            d.pop("next_attempt_at", None)
            if state == "COMPLETED":
                d["status"] = "completed"
            elif state not in RETRIED and not (state == "CANCELLED" and reason.startswith(STOPPED_BY_SIGTERM)):
                d.update(status="cancelled", reason=reason)
            elif d["attempt"] <= max_retries:
                d.update(status="retrying", reason=reason,
                         next_attempt_at=_iso(now + backoff_delay(d["attempt"], retry_backoff_s)))
            else:
                d.update(status="failed", reason=reason)
            return True

        return self.update(change)

    def begin_attempt(self, now: float | None = None, stale_s: float = STARTING_STALE_S) -> int | None:
        """Take the next attempt when one is due; exactly one caller gets each attempt.

        A ``retrying`` claim whose ``next_attempt_at`` has passed moves to ``starting`` with
        ``attempt + 1``. A ``starting`` claim older than ``stale_s`` (its submitter died
        before recording the run) is handed out again with the same attempt number: sent
        with the same idempotency key it yields the run that may already exist.

        Returns
        -------
        int or None
            The attempt number to submit, or None when nothing is due for this caller.
        """
        now = time.time() if now is None else now
        taken: list[int] = []

        def change(d: dict[str, Any]) -> bool:
            if d["status"] == "retrying" and (_epoch(d.get("next_attempt_at")) or 0) <= now:
                d["attempt"] += 1
            elif not (d["status"] == "starting" and d.get("started_at")
                      and _epoch(d["started_at"]) <= now - stale_s):
                return False
            d.update(status="starting", started_at=_iso(now), flow_run_id=None)
            d.pop("next_attempt_at", None)
            taken.append(d["attempt"])
            return True

        return taken[0] if self.update(change) else None

    def abort_attempt(self, attempt: int, error: str, now: float | None = None) -> None:
        """Attempt ``attempt`` could not be submitted: the next pass tries it again."""
        now = time.time() if now is None else now

        def change(d: dict[str, Any]) -> bool:
            if d["status"] != "starting" or d["attempt"] != attempt:
                return False
            d.update(status="retrying", attempt=attempt - 1, next_attempt_at=_iso(now),
                     submit_error=error[:MAX_REASON])
            return True

        self.update(change)

    def give_up(self, status: str, reason: str) -> dict[str, Any] | None:
        """Mark an active claim final (``failed`` or ``superseded``) with ``reason``."""

        def change(d: dict[str, Any]) -> bool:
            if d["status"] not in ACTIVE:
                return False
            d.update(status=status, reason=reason[:MAX_REASON])
            d.pop("next_attempt_at", None)
            return True

        return self.update(change)


def status_text(data: dict[str, Any]) -> str:
    """A claim's status for people: ``running``, ``retrying at T``, ``failed: reason``..."""
    s = data.get("status", "running")
    if s == "retrying":
        return f"retrying at {data.get('next_attempt_at')} (after: {data.get('reason')})"
    if s in ("failed", "cancelled", "superseded"):
        return f"{s}: {data.get('reason')}"
    return s


def status_rows(claims: Iterable[dict[str, Any]], max_retries: int | None = None,
                limit: int = 200) -> list[dict[str, Any]]:
    """Rows of the watcher's status table: the ``limit`` most recently updated claims first."""
    rows = []
    for d in sorted(claims, key=lambda d: d.get("updated") or d.get("claimed") or "", reverse=True)[:limit]:
        runs = [h["flow_run_id"] for h in d.get("history", [])]
        if d.get("flow_run_id") and d.get("flow_run_id") not in runs:
            runs.append(d["flow_run_id"])
        total = "" if max_retries is None else f"/{max_retries + 1}"
        rows.append({"scan": d.get("scan", ""), "status": status_text(d), "attempt": f"{d.get('attempt', 1)}{total}",
                     "flow_run_id": runs[-1] if runs else "", "runs": ", ".join(runs),
                     "updated": d.get("updated") or d.get("claimed") or ""})
    return rows


def scan_identity(path: str | os.PathLike) -> str:
    """A short id of the scan's path, size and modification time."""
    p = Path(path).resolve()
    st = p.stat()
    return hashlib.sha256(f"{p}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:20]


def find_scans(roots: Iterable[str | os.PathLike], patterns: Iterable[str] = DEFAULT_PATTERNS,
               min_age_s: float = 60.0, now: float | None = None) -> list[Path]:
    """Scan files under ``roots`` (recursively) matching ``patterns``, settled for ``min_age_s``."""
    now = time.time() if now is None else now
    found: set[Path] = set()
    for root in roots:
        root = Path(root).expanduser().resolve()
        if not root.is_dir():
            raise FileNotFoundError(f"input root {root} is not a directory")
        for pattern in patterns:
            for p in root.rglob(pattern):
                if p.is_file() and not p.name.startswith(".") and now - p.stat().st_mtime >= min_age_s:
                    found.add(p.resolve())
    return sorted(found)


def claim(scan: str | os.PathLike, claims_dir: str | os.PathLike) -> Claim | None:
    """Claim ``scan`` for processing; None when it is already claimed (by anyone, ever)."""
    scan = Path(scan).resolve()
    cid = scan_identity(scan)
    d = Path(claims_dir)
    d.mkdir(parents=True, exist_ok=True)
    f = d / f"{cid}.json"
    try:
        fd = os.open(f, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return None
    now = _iso(time.time())
    with os.fdopen(fd, "w") as fh:
        json.dump({"scan": str(scan), "claimed": now, "host": os.uname().nodename, "pid": os.getpid(),
                   "status": "starting", "attempt": 1, "started_at": now, "history": []}, fh)
    return Claim(scan, cid, f)


def list_claims(claims_dir: str | os.PathLike) -> list[Claim]:
    """Every claim under ``claims_dir`` (none when the folder does not exist yet)."""
    found = []
    for f in sorted(Path(claims_dir).glob("*.json")):
        try:
            found.append(Claim.load(f))
        except (OSError, ValueError):  # released meanwhile, or still being written
            continue
    return found


def claims_dir_for(output_root: str | os.PathLike) -> Path:
    return Path(output_root).expanduser().resolve() / ".claims"
