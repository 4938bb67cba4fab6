"""Benchmarks (run as modules from the repository root, e.g. ``uv run python -m bench.cobi``)."""
