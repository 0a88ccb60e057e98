"""Benchmarks: backbeat and APScheduler 3.11 measured side by side (``python -m bench``)."""
