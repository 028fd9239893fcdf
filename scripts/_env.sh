# Sourced by scripts/demo and scripts/test: make (or reuse) .venv and install the project
# pinned through constraints.txt (torch 2.13.0 CPU wheel, prefect 3.8.8, fastapi < 0.151).
# Sets REPO (the repository root); leaves the caller's working directory as it was.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY=${PYTHON:-python3}
if [ ! -x "$REPO/.venv/bin/python" ]; then
  if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "tomodenoise needs Python >= 3.11; $PY is $("$PY" --version 2>&1). Set PYTHON=/path/to/python3.11" >&2
    exit 1
  fi
  "$PY" -m venv "$REPO/.venv"
fi
# shellcheck disable=SC1091
. "$REPO/.venv/bin/activate"
# Install (again) only when the dependency files changed since the last install.
stamp="$REPO/.venv/.tomodenoise-installed"
want="$(cat "$REPO/pyproject.toml" "$REPO/constraints.txt" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  python -m pip install -q --disable-pip-version-check -c "$REPO/constraints.txt" -e "$REPO[test]"
  echo "$want" > "$stamp"
fi
