#!/usr/bin/env bash
# One command to set up and run the service: comfy-gateway in front of COMFYUI_API_BASE
# (default http://127.0.0.1:8188), configured by the environment and an optional .env.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/comfy-gateway serve
