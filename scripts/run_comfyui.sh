#!/usr/bin/env bash
# Installs (once, outside the clone) and starts a local CPU ComfyUI 0.3.75 in the foreground.
# Usage: scripts/run_comfyui.sh [PORT]   (default 8188; data under $COMFYUI_HOME/data)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
PORT="${1:-${COMFYUI_PORT:-8188}}"
COMFYUI_HOME="${COMFYUI_HOME:-$HOME/.cache/comfy-gateway/comfyui}"
export COMFYUI_HOME
COMFY_DIR="$("$here/install_comfyui.sh" | tail -n 1)"
DATA="${COMFYUI_DATA:-$COMFYUI_HOME/data-$PORT}"
mkdir -p "$DATA"
cd "$COMFY_DIR"
exec "$COMFYUI_HOME/venv/bin/python" main.py --cpu --listen 127.0.0.1 --port "$PORT" \
  --disable-all-custom-nodes --base-directory "$DATA" --dont-print-server \
  --database-url "sqlite:///:memory:"
