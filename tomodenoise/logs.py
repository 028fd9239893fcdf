"""Where log records go: a quiet console for people, everything in the run's log file.

One call, :func:`configure`, sets it up for a process (the CLI, and each local Dask worker
through :func:`dask_setup`, Dask's preload hook):

- the console (stderr) shows warnings and errors as one line each, without tracebacks, and
  the stage summaries (records logged with ``extra={"console": True}``, see :func:`summary`);
  ``verbosity=VERBOSE`` (``-v``) adds every INFO record and the tracebacks, ``QUIET`` (``-q``)
  shows errors only;
- the run log (``<out>/<scan_id>/report/run.log``) receives every record at INFO and above
  (DEBUG for ``tomodenoise``), from every library, with timestamps and tracebacks;
- libraries that install their own console handlers (Dask's ``distributed``, Prefect's
  root handler, uvicorn) are routed through these two handlers instead, so each record
  appears once.

The settings travel to child processes in environment variables (``TOMODENOISE_RUN_LOG``,
``TOMODENOISE_VERBOSITY``), which is how local Dask workers write to the same run log.
No Prefect import here: Prefect's loggers are configured by name.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

QUIET, NORMAL, VERBOSE = 0, 1, 2
ENV_RUN_LOG = "TOMODENOISE_RUN_LOG"
ENV_VERBOSITY = "TOMODENOISE_VERBOSITY"

# Libraries whose INFO chatter belongs in the run log, not on a scientist's console.
LIBRARIES = ("distributed", "dask", "prefect", "uvicorn", "fastapi", "sqlalchemy", "aiosqlite", "alembic",
             "httpx", "httpcore", "asyncio", "tornado", "bokeh", "urllib3", "docket", "websockets",
             "matplotlib", "PIL", "numcodecs", "zarr")
# Loggers that report a failed task or flow run. The CLI prints the error itself, in one
# sentence, so on a normal console these reports (and their tracebacks) only go to the file.
_ENGINE_LOGGERS = ("prefect.flow_runs", "prefect.task_runs", "prefect.flow_engine", "prefect.task_engine")

# Warnings that are expected while a run stops (the cluster cancels the chunks under way).
_BENIGN = (("distributed.worker.state_machine", "ended with CancelledError"),)
# Errors a worker logs while the run closes its own cluster (before the training, at the end): a
# heartbeat in flight when the scheduler went away. They stay in the run log, off the console.
_CLOSING = (("distributed.worker", "Failed to communicate with scheduler during heartbeat"),)
_CONSOLE_FMT = "%(message)s"
_FILE_FMT = "%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s"


class ConsoleFilter(logging.Filter):
    """What reaches the console at a verbosity (see the module docstring)."""

    def __init__(self, verbosity: int = NORMAL):
        super().__init__()
        self.verbosity = verbosity

    def filter(self, record: logging.LogRecord) -> bool:
        if self.verbosity >= VERBOSE:
            return record.levelno >= logging.INFO
        if getattr(record, "console", False):
            return self.verbosity >= NORMAL
        if record.name.startswith(_ENGINE_LOGGERS) and logging.ERROR <= record.levelno < logging.CRITICAL:
            return False
        if record.levelno < logging.ERROR and any(record.name.startswith(n) and t in record.getMessage()
                                                  for n, t in _BENIGN):
            return False
        if record.levelno < logging.CRITICAL and any(record.name.startswith(n) and t in record.getMessage()
                                                     for n, t in _CLOSING):
            return False
        if self.verbosity <= QUIET:
            return record.levelno >= logging.ERROR
        return record.levelno >= logging.WARNING


class ConsoleFormatter(logging.Formatter):
    """Summaries as they are; warnings as ``warning: <first line>``; tracebacks only when verbose."""

    def __init__(self, verbosity: int = NORMAL):
        super().__init__(_CONSOLE_FMT)
        self.verbosity = verbosity

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if self.verbosity >= VERBOSE:
            text = f"{record.levelname.lower()} {record.name}: {msg}"
            if record.exc_info:
                text += "\n" + self.formatException(record.exc_info)
            return text
        if getattr(record, "console", False) and record.levelno < logging.WARNING:
            return msg
        if not record.name.startswith("tomodenoise"):  # a library's message: its first line
            msg = msg.strip().splitlines()[0] if msg.strip() else msg
        return f"{record.levelname.lower()}: {msg}"


class ConsoleHandler(logging.StreamHandler):
    """The console handler; writes to whatever ``sys.stderr`` is when a record arrives."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.tomodenoise = "console"

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        try:  # what was printed to stdout comes first, so a warning never lands mid-line
            sys.stdout.flush()
        except Exception:
            pass
        try:  # keep a progress bar intact: tqdm.write moves the bar below the line
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:
            super().emit(record)


class RunLogFormatter(logging.Formatter):
    """The run log's format. A library's INFO/DEBUG record that carries an exception (Dask logs
    "Batched Comm Closed" with its traceback when a cluster shuts down) keeps one line naming
    the exception: a traceback in the run log means something went wrong."""

    def __init__(self):
        super().__init__(_FILE_FMT)

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info and record.levelno < logging.WARNING and not record.name.startswith("tomodenoise"):
            exc = record.exc_info[1]
            quiet = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None})
            return super().format(quiet) + (f" ({type(exc).__name__}: {exc})" if exc is not None else "")
        return super().format(record)


class RunLogHandler(logging.FileHandler):
    """Appends to the run log; marked so :func:`configure` finds and replaces it."""

    def __init__(self, path: str | os.PathLike[str]):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        super().__init__(path, mode="a", encoding="utf-8", delay=False)
        self.tomodenoise = "file"
        self.setFormatter(RunLogFormatter())


def _ours(handler: logging.Handler) -> str | None:
    return getattr(handler, "tomodenoise", None)


# Libraries whose INFO records are one per request or query: kept out of the run log too.
CHATTY = ("sqlalchemy", "aiosqlite", "asyncio", "httpx", "httpcore", "urllib3", "matplotlib", "PIL",
          "uvicorn.access", "docket", "websockets", "numcodecs", "zarr", "bokeh", "tornado")


def set_library_levels(verbosity: int = NORMAL) -> None:
    """WARNING for the :data:`CHATTY` libraries (INFO with ``-v``)."""
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.INFO if verbosity >= VERBOSE else logging.WARNING)


def _route_libraries(verbosity: int) -> None:
    """Send the libraries' records through the root handlers only (each record once)."""
    try:  # distributed adds a stderr handler of its own when first imported: import it now
        import distributed  # noqa: F401
    except Exception:  # pragma: no cover - a core dependency
        pass
    for name in LIBRARIES + ("distributed.worker", "distributed.nanny", "distributed.scheduler",
                             "prefect.server", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            # keep Prefect's handlers that send records to its API (the UI's run logs)
            if type(h).__name__ in ("APILogHandler", "WorkerAPILogHandler"):
                continue
            lg.removeHandler(h)
        lg.propagate = True
    set_library_levels(verbosity)
    # Prefect's internal logger has a stderr handler and does not propagate: route it too.
    internal = logging.getLogger("prefect._internal")
    for h in list(internal.handlers):
        internal.removeHandler(h)
    internal.propagate = True
    internal.setLevel(logging.WARNING)


def configure(run_log: str | os.PathLike[str] | None = None, verbosity: int = NORMAL,
              export: bool = True) -> None:
    """Set up the console and the run log for this process (idempotent; call again to switch files).

    Parameters
    ----------
    run_log
        The file that receives every record (created with its folder); None: console only.
    verbosity
        :data:`QUIET`, :data:`NORMAL` or :data:`VERBOSE`.
    export
        Also put the settings in the environment, for child processes (Dask workers).
    """
    root = logging.getLogger()
    for h in list(root.handlers):
        kind = _ours(h)
        if kind == "file" and run_log is not None and Path(h.baseFilename) == Path(run_log).resolve():
            continue
        # ours are replaced; a foreign console handler (Prefect's, basicConfig's) would print twice
        if kind is not None or type(h) is logging.StreamHandler or type(h).__name__ == "PrefectConsoleHandler":
            root.removeHandler(h)
            if kind == "file":
                h.close()
    console = ConsoleHandler()
    console.addFilter(ConsoleFilter(verbosity))
    console.setFormatter(ConsoleFormatter(verbosity))
    root.addHandler(console)
    if run_log is not None and not any(_ours(h) == "file" for h in root.handlers):
        root.addHandler(RunLogHandler(Path(run_log).resolve()))
    root.setLevel(logging.INFO)
    logging.getLogger("tomodenoise").setLevel(logging.DEBUG)
    logging.captureWarnings(True)
    _route_libraries(verbosity)
    if export:
        os.environ[ENV_VERBOSITY] = str(verbosity)
        if run_log is not None:
            os.environ[ENV_RUN_LOG] = str(Path(run_log).resolve())
        else:
            os.environ.pop(ENV_RUN_LOG, None)


def configure_from_env() -> None:
    """:func:`configure` with the settings a parent process exported (no-op when none were)."""
    if ENV_VERBOSITY not in os.environ and ENV_RUN_LOG not in os.environ:
        return
    configure(os.environ.get(ENV_RUN_LOG) or None, int(os.environ.get(ENV_VERBOSITY, NORMAL)), export=False)


def dask_setup(worker: Any = None) -> None:
    """Dask's preload hook (``distributed.worker.preload: [tomodenoise.logs]``): a local worker
    logs like its parent, into the same run log."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():  # Ctrl-C is for the CLI, which
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # closes its cluster: no tracebacks from here
    # Prefect, imported later here, leaves a root logger with handlers alone; the CLI also points
    # PREFECT_LOGGING_SETTINGS_PATH at a configuration whose loggers have no console handlers.
    configure_from_env()


def show_progress() -> bool:
    """Whether progress bars are wanted (not with ``-q``)."""
    return os.environ.get(ENV_VERBOSITY, str(NORMAL)) != str(QUIET)


def bars_wanted() -> bool:
    """Whether to draw progress bars: wanted (:func:`show_progress`) and stderr is a terminal (a bar's
    ``\r`` frames would fill a log file or a pipe with hundreds of partial lines)."""
    import sys

    return show_progress() and bool(getattr(sys.stderr, "isatty", lambda: False)())


class _OffConsole(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.console = False
        return True


@contextmanager
def summaries_to_file_only(name: str) -> Iterator[None]:
    """While the block runs, the stage summaries of logger ``name`` go to the run log only
    (for a stage run inside another, e.g. N2I training inside a comparison that prints its own lines)."""
    lg, flt = logging.getLogger(name), _OffConsole()
    lg.addFilter(flt)
    try:
        yield
    finally:
        lg.removeFilter(flt)


def summary(logger: logging.Logger, msg: str, *args: Any) -> None:
    """Log a stage's one-line summary: shown on a normal console, and in the run log."""
    logger.info(msg, *args, extra={"console": True})


@contextmanager
def run_log_to(run_log: str | os.PathLike[str]) -> Iterator[None]:
    """Also write every record to ``run_log`` while the block runs, unless this process already
    does (the CLI sets it up first). For runs started by a deployment's worker, whose console is
    the worker's: their store gets its ``report/run.log`` too, workers of a local cluster included."""
    path = Path(run_log).resolve()
    root = logging.getLogger()
    if any(_ours(h) == "file" and Path(h.baseFilename) == path for h in root.handlers):
        yield
        return
    handler = RunLogHandler(path)
    root.addHandler(handler)
    set_library_levels(int(os.environ.get(ENV_VERBOSITY, NORMAL)))
    level = root.level
    if level > logging.INFO or level == logging.NOTSET:
        root.setLevel(logging.INFO)
    saved = os.environ.get(ENV_RUN_LOG)
    os.environ[ENV_RUN_LOG] = str(path)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(level)
        if saved is None:
            os.environ.pop(ENV_RUN_LOG, None)
        else:
            os.environ[ENV_RUN_LOG] = saved


def run_log_path(store_root: str | os.PathLike[str]) -> Path:
    """Where a scan's run log lives: ``<store>/report/run.log``."""
    return Path(store_root) / "report" / "run.log"
