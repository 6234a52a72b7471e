"""The client-side commands of `comfy-gateway`: run, result, cancel (serve lives in cli.py)."""
