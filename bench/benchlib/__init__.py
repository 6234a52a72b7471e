"""Helpers of bench/bench_gateway.py: processes, the direct ComfyUI client, statistics."""
