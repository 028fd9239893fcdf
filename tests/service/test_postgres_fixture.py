"""The PostgreSQL fixture's rules without starting anything: skip on a laptop, fail on CI."""

from __future__ import annotations

import pytest

import _postgres  # tests/service/ is on sys.path (see conftest.py)


def test_missing_binaries_skip_on_a_laptop_and_fail_on_ci(monkeypatch):
    monkeypatch.setattr(_postgres, "find_bindir", lambda: None)
    with pytest.raises(_postgres.PostgresMissing, match="apt-get install postgresql"):
        with _postgres.start_postgres():
            pass
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no PostgreSQL"):
        _postgres.skip_or_fail("gone")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        _postgres.skip_or_fail("gone")


def test_url_names_the_driver_user_port_and_database(tmp_path):
    pg = _postgres.Postgres(port=5999, user="postgres", data=tmp_path, log=tmp_path / "log", bindir=tmp_path)
    assert pg.url("prefect") == "postgresql+asyncpg://postgres@127.0.0.1:5999/prefect"
