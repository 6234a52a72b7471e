#!/usr/bin/env bash
# Creates .venv (Python 3.11+) and installs the project into it; with --test, the test extras too,
# and Debian's chromium for the web console's browser tests (Playwright drives that binary and is
# never allowed to download a browser of its own).
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

# python-magic needs the system's libmagic (input types are read from content, not names).
has_libmagic() { "$PY" -c 'import ctypes.util, sys; sys.exit(0 if ctypes.util.find_library("magic") else 1)'; }
if ! has_libmagic; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing libmagic1 (file types of input assets)" >&2
    apt-get install -y -q libmagic1 >&2 || { apt-get update -q >&2 && apt-get install -y -q libmagic1 >&2; }
  else
    echo "comfy-gateway needs libmagic: install it first (Debian/Ubuntu: apt-get install libmagic1;" \
         "Fedora: dnf install file-libs; macOS: brew install libmagic)" >&2
    exit 1
  fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=".venv/.installed$extras-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/pip install -q --disable-pip-version-check -e ".$extras"
  touch "$stamp"
fi

if [ -n "$extras" ] && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's chromium for the browser tests" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
  else
    echo "the browser tests need /usr/bin/chromium: install Debian's chromium package (as root: apt-get install chromium)" >&2
  fi
fi
