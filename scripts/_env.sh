# Sourced by scripts/demo and scripts/test: make (or reuse) .venv and install the project
# pinned through constraints.txt (torch 2.13.0 CPU wheel, prefect 3.8.8, fastapi < 0.151).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[test]"
