"""The command line of bench/bench_gateway.py."""
