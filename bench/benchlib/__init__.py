"""The parts of bench/bench_gateway.py: options, the run, the measured parts, clients, meters, the report."""
