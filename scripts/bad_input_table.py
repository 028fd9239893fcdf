#!/usr/bin/env python
"""Write docs/BAD_INPUT.md from the cases of tests/unit/test_bad_input_table.py (each run through
the command line, as the test runs them).

    .venv/bin/python scripts/bad_input_table.py
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
import pytest  # noqa: E402

if __name__ == "__main__":
    # the cases run as the test runs them (pytest's capsys): the test writes the page when asked
    sys.exit(pytest.main([str(ROOT / "tests" / "unit" / "test_bad_input_table.py"), "-q", "-p", "no:cacheprovider",
                          "--write-bad-input-table"]))
