"""Benchmark scenarios: `make bench` (python -m bench). Results are ratios measured in one run."""
