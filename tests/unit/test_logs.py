"""The console a scientist reads and the run log that keeps everything (tomodenoise.logs, the CLI)."""

from __future__ import annotations

import logging

import h5py
import numpy as np
import pytest

from tomodenoise import logs
from tomodenoise.cli import main


def _records(verbosity: int) -> list[str]:
    shown = []
    f = logs.ConsoleFilter(verbosity)
    fmt = logs.ConsoleFormatter(verbosity)
    for name, level, extra in (("distributed.scheduler", logging.INFO, {}), ("prefect.flow_runs", logging.INFO, {}),
                               ("prefect.flow_runs", logging.ERROR, {}), ("tomodenoise.stages", logging.INFO,
                                                                         {"console": True}),
                               ("tomodenoise.preprocess", logging.WARNING, {}), ("tomodenoise.cli", logging.ERROR, {})):
        rec = logging.LogRecord(name, level, __file__, 1, f"{name} says\nsecond line", None, None)
        rec.__dict__.update(extra)
        if f.filter(rec):
            shown.append(fmt.format(rec))
    return shown


def test_console_shows_summaries_and_warnings_by_default_everything_with_v_only_errors_with_q():
    normal = _records(logs.NORMAL)
    assert normal == ["tomodenoise.stages says\nsecond line", "warning: tomodenoise.preprocess says\nsecond line",
                      "error: tomodenoise.cli says\nsecond line"]
    assert len(_records(logs.VERBOSE)) == 6
    assert _records(logs.QUIET) == ["error: tomodenoise.cli says\nsecond line"]


def test_library_records_go_to_the_run_log_once_and_not_to_the_console(tmp_path, capsys):
    run_log = tmp_path / "scan" / "report" / "run.log"
    logs.configure(run_log, logs.NORMAL)
    logs.configure(run_log, logs.NORMAL)  # again (the demo does, per scan): still one handler each
    dist = logging.getLogger("distributed.scheduler")
    dist.info("Scheduler at tcp://127.0.0.1:1234")
    logging.getLogger("sqlalchemy.engine").info("SELECT 1")  # below WARNING: dropped everywhere
    logs.summary(logging.getLogger("tomodenoise.stages"), "ingest      done")
    logging.getLogger("tomodenoise.x").warning("angles were not sorted")
    for h in logging.getLogger().handlers:
        h.flush()
    err = capsys.readouterr().err
    assert "Scheduler at" not in err and "SELECT 1" not in err
    assert "ingest      done" in err and "warning: angles were not sorted" in err
    text = run_log.read_text()
    assert text.count("Scheduler at tcp://127.0.0.1:1234") == 1 and "SELECT 1" not in text
    assert "ingest      done" in text and "angles were not sorted" in text
    assert logs.os.environ[logs.ENV_RUN_LOG] == str(run_log.resolve())


def _bad_scan(path):
    """A Data Exchange scan whose angles are all the same: refused at ingest, after the checks."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f["/exchange/data"] = rng.uniform(200, 900, (24, 2, 24)).astype(np.float32)
        f["/exchange/data_white"] = np.full((2, 2, 24), 1000.0, np.float32)
        f["/exchange/data_dark"] = np.full((1, 2, 24), 10.0, np.float32)
        f["/exchange/theta"] = np.full(24, 30.0)
        f["/exchange/theta"].attrs["units"] = "degrees"
    return path


@pytest.mark.parametrize("verbose", [False, True])
def test_a_real_error_is_one_sentence_on_the_console_with_its_traceback_in_the_run_log(tmp_path, capsys, verbose):
    scan = _bad_scan(tmp_path / "same.h5")
    rc = main(["run", str(scan), "--out", str(tmp_path / "out"), "--no-prefect", *(["-v"] if verbose else [])])
    err = capsys.readouterr().err
    assert rc == 2
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "same.h5" in errors[0] and "angles" in errors[0], err
    assert ("Traceback" in err) == verbose
    run_log = (tmp_path / "out" / "same" / "report" / "run.log").read_text()
    assert "Traceback" in run_log and "ScanError" in run_log


def test_a_run_started_by_a_worker_writes_its_run_log_too(tmp_path):
    run_log = tmp_path / "store" / "report" / "run.log"
    root = logging.getLogger()
    before = list(root.handlers)
    with logs.run_log_to(run_log):
        logging.getLogger("distributed.scheduler").info("Beginning flow run")
        assert logs.os.environ[logs.ENV_RUN_LOG] == str(run_log.resolve())
        with logs.run_log_to(run_log):  # already written there: no second handler
            assert len(root.handlers) == len(before) + 1
    assert root.handlers == before and logs.ENV_RUN_LOG not in logs.os.environ
    assert run_log.read_text().count("Beginning flow run") == 1


def test_a_library_info_record_with_an_exception_is_one_line_in_the_run_log(tmp_path):
    """Dask logs ``Batched Comm Closed`` at INFO with its traceback when a cluster shuts down."""
    run_log = tmp_path / "run.log"
    with logs.run_log_to(run_log):
        for name, level in (("distributed.batched", logging.INFO), ("tomodenoise.x", logging.INFO),
                            ("distributed.worker", logging.ERROR)):
            try:
                raise ConnectionError(f"closed for {name}")
            except ConnectionError:
                logging.getLogger(name).log(level, "Batched Comm Closed", exc_info=True)
    lines = run_log.read_text().splitlines()
    first = next(line for line in lines if "distributed.batched" in line)
    assert first.endswith("Batched Comm Closed (ConnectionError: closed for distributed.batched)")
    assert run_log.read_text().count("Traceback") == 2  # ours, and a library's error, keep theirs


def test_a_heartbeat_lost_while_the_run_closes_its_cluster_stays_off_the_console():
    from tomodenoise.logs import NORMAL, ConsoleFilter

    rec = logging.LogRecord("distributed.worker", logging.ERROR, __file__, 1,
                            "Failed to communicate with scheduler during heartbeat.", None, None)
    assert not ConsoleFilter(NORMAL).filter(rec)
    other = logging.LogRecord("distributed.worker", logging.ERROR, __file__, 1, "Compute Failed", None, None)
    assert ConsoleFilter(NORMAL).filter(other)
