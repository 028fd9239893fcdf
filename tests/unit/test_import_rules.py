"""docs/DESIGN.md's import rule: the core (tomodenoise/) never imports Prefect; flows and tasks may."""

import subprocess
import sys

CHECK = r"""
import importlib, pkgutil, sys
import tomodenoise
names = sorted(m.name for m in pkgutil.walk_packages(tomodenoise.__path__, "tomodenoise."))
for name in names:
    importlib.import_module(name)
bad = sorted(m for m in sys.modules if m == "prefect" or m.startswith(("prefect.", "prefect_")))
print(len(names), bad[:5])
sys.exit(1 if bad else 0)
"""


def test_no_core_module_imports_prefect():
    r = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"the core imported Prefect: {r.stdout} {r.stderr[-2000:]}"
    n = int(r.stdout.split()[0])
    assert n >= 25  # every module of the package was imported, not just a few
