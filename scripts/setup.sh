#!/usr/bin/env bash
# Creates .venv (Python 3.11+) and installs the project into it; with --test, the test extras too.
# Re-running is cheap: it reinstalls only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"

"$PY" - <<'PYCHECK'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"comfy-gateway needs Python 3.11 or newer; {sys.executable} is {sys.version.split()[0]}")
PYCHECK

[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=".venv/.installed$extras-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/pip install -q --disable-pip-version-check -e ".$extras"
  touch "$stamp"
fi
