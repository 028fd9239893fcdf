"""One run at a time per output store: an OS file lock that dies with its holder.

``<store>/.lock`` is locked with ``flock(LOCK_EX)`` by the run that writes the store. The
kernel releases the lock when the holder's process ends, however it ends (SIGKILL, a crash,
a node losing power on a local disk), so a crashed run never leaves a scan locked, and no
server is involved: the lock holds the same whether the run reports to an embedded Prefect
server, a persistent one, or none (``--no-prefect``).

The file also says who holds it (host, pid, start time, a note such as the flow run id),
rewritten every ``heartbeat_s`` while the run lives, so a waiting run can say whom it waits
for and since when the holder was last seen alive.

Shared file systems: NFSv4 and GPFS support ``flock`` across nodes (Linux maps it onto POSIX
locks); a lock held by a node that died is freed when the NFS server's client lease expires
(``/proc/fs/nfsd/nfsv4leasetime``, 90 s by default; set 30 s for a faster takeover). NFSv3
(NLM) frees a dead node's locks only when that node reboots or the lock daemon is restarted:
prefer NFSv4. Lustre needs the ``flock`` mount option (``localflock`` gives locks that hold
on one node only); where the file system refuses locks, the run goes on with a warning (two
runs of one scan then write the same whole chunks; their bytes are identical). The holder's
heartbeat (rewritten every ``heartbeat_s``) tells a waiting run, and an operator, when the
holder was last seen alive.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"


class StoreLocked(RuntimeError):
    """Another live run holds the store's lock (raised only when not waiting)."""


def lock_path(store_root: str | os.PathLike[str]) -> Path:
    return Path(store_root) / LOCK_NAME


def holder(store_root: str | os.PathLike[str]) -> dict | None:
    """What the lock file says about its holder (None when there is no readable record)."""
    try:
        return json.loads(lock_path(store_root).read_text() or "null")
    except (OSError, ValueError):
        return None


def is_locked(store_root: str | os.PathLike[str]) -> bool:
    """True when a live process holds the store's lock."""
    p = lock_path(store_root)
    if not p.exists():
        return False
    with open(p, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return False


def _describe(info: dict | None) -> str:
    if not info:
        return "another run"
    seen = info.get("heartbeat") or info.get("started", "?")
    note = f", {info['note']}" if info.get("note") else ""
    return f"the run of pid {info.get('pid')} on {info.get('host')} (started {info.get('started')}, last seen {seen}{note})"


def _write_record(fh, record: dict) -> None:
    record["heartbeat"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    fh.seek(0)
    fh.truncate()
    fh.write(json.dumps(record))
    fh.flush()


@contextmanager
def store_lock(store_root: str | os.PathLike[str], wait: bool = True, note: str = "",
               poll_s: float = 0.5, heartbeat_s: float = 10.0,
               on_wait: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Hold the lock of ``store_root`` for the duration of the ``with`` block.

    Parameters
    ----------
    wait
        Wait for a live holder to finish (the default); False raises :class:`StoreLocked`.
    note
        Recorded with the holder (e.g. the Prefect flow run id).
    on_wait
        Called once with a sentence saying whom the run waits for (default: a warning).
    """
    root = Path(store_root)
    root.mkdir(parents=True, exist_ok=True)
    path = lock_path(root)
    fh = open(path, "a+", encoding="utf-8")
    try:
        told = False
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                who = f"{root} is being written by {_describe(holder(root))}"
                if not wait:
                    raise StoreLocked(f"{who}; try again when it has finished") from None
                msg = f"{who}: waiting for it to finish (a run that dies releases the lock at once)"
                if not told:
                    (on_wait or log.warning)(msg)
                    told = True
                time.sleep(poll_s)
            except OSError as e:
                if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    log.warning("the file system of %s does not support file locks (%s): running without the "
                                "one-run-per-scan lock", root, e.strerror)
                    break
                raise
        record = {"host": socket.gethostname(), "pid": os.getpid(),
                  "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "note": note}
        _write_record(fh, record)
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(heartbeat_s):
                try:
                    _write_record(fh, record)
                except (OSError, ValueError):  # closed under us at exit
                    return

        t = threading.Thread(target=beat, name="store-lock-heartbeat", daemon=True)
        t.start()
        try:
            yield path
        finally:
            stop.set()
            t.join(timeout=2)
            try:
                fh.seek(0)
                fh.truncate()
                fh.flush()
            except OSError:
                pass
    finally:
        fh.close()  # releases the flock
