"""How a ``tomodenoise`` process stops on SIGTERM or Ctrl-C: in order, and for sure in time.

SLURM (a time limit, ``scancel``), ``timeout`` and a shutdown send SIGTERM and kill the
process a grace period later (SLURM's ``KillWait``, 30 s by default). On SIGTERM the run
saves what it has (the training's checkpoint, the chunks written), marks its flow run
Cancelled and exits with status 143; Ctrl-C the same with 130.

Inside a flow run Prefect installs its own SIGTERM handler (it raises ``TerminationSignal``),
so the moment a signal arrives is caught below Python's handlers: :func:`install` points
``signal.set_wakeup_fd`` at a socket that a thread watches. From the first SIGTERM or SIGINT
the process has :data:`DEADLINE_S` seconds to stop in order; after that it exits anyway
(the embedded Prefect server dies with it). Further SIGTERMs are ignored meanwhile.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

log = logging.getLogger("tomodenoise.cli")

DEADLINE_S = 9.0
EXIT_CODES = {signal.SIGTERM: 143, signal.SIGINT: 130}
_state: dict[str, Any] = {"armed": None, "reported": False, "wakeup": None}


class Terminated(SystemExit):
    """SIGTERM outside a flow run (inside one, Prefect raises its ``TerminationSignal``)."""

    def __init__(self) -> None:
        super().__init__(143)


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def is_termination(exc: BaseException) -> bool:
    """True for the exception a SIGTERM raises (ours, or Prefect's ``TerminationSignal``)."""
    return isinstance(exc, Terminated) or type(exc).__name__ == "TerminationSignal"


def is_stop(exc: BaseException) -> bool:
    """True for SIGTERM's or Ctrl-C's exception."""
    return isinstance(exc, KeyboardInterrupt) or is_termination(exc)


def stopping() -> bool:
    """Whether a SIGTERM or Ctrl-C has arrived (shorten the cleanup then)."""
    return _state["armed"] is not None


def arm(signum: int = signal.SIGTERM, seconds: float = DEADLINE_S) -> None:
    """Start the deadline (once): exit with the signal's status ``seconds`` from now."""
    if _state["armed"] is not None:
        return
    _state["armed"] = signum
    try:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
    except ValueError:
        pass

    def _exit() -> None:
        time.sleep(seconds)
        try:
            sys.stderr.write(f"error: still stopping {seconds:.0f} s after the signal: exiting now; "
                             "run the same command again to resume\n")
            sys.stderr.flush()
        finally:
            os._exit(EXIT_CODES.get(signum, 143))

    threading.Thread(target=_exit, name="stop-deadline", daemon=True).start()


def _watch(sock: socket.socket) -> None:
    while True:
        try:
            data = sock.recv(64)
        except OSError:
            return
        if not data:
            return
        for signum in data:
            if signum in EXIT_CODES:
                arm(signum)


def install() -> None:
    """SIGTERM raises :class:`Terminated`; the first SIGTERM or SIGINT starts the deadline.

    Only in the main thread (a no-op elsewhere, e.g. when the CLI runs inside a test).
    """
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGTERM, _on_sigterm)
    if _state["wakeup"] is None:
        r, w = socket.socketpair()
        w.setblocking(False)
        try:
            signal.set_wakeup_fd(w.fileno(), warn_on_full_buffer=False)
        except ValueError:  # pragma: no cover - not the main thread after all
            r.close()
            w.close()
            return
        _state["wakeup"] = (r, w)
        threading.Thread(target=_watch, args=(r,), name="stop-watch", daemon=True).start()


def report(exc: BaseException) -> int:
    """Say once, in one sentence, why the run stopped; returns the exit status."""
    code = 130 if isinstance(exc, KeyboardInterrupt) else 143
    if not _state["reported"]:
        _state["reported"] = True
        why = "interrupted (Ctrl-C)" if code == 130 else "stopped by SIGTERM"
        log.error("%s: what was written so far is kept (chunks, checkpoints, finished methods); run the same "
                  "command again to resume", why, exc_info=exc)
    return code


def uninstall() -> None:
    """Undo :func:`install` (tests that call the CLI in their own process)."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if _state["wakeup"] is not None:
        signal.set_wakeup_fd(-1)
        for s in _state["wakeup"]:
            s.close()
        _state["wakeup"] = None
    _state["reported"] = False
