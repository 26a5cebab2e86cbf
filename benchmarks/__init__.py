"""Benchmarks: measured comparisons, run by hand or by ``make bench`` (not tests)."""
