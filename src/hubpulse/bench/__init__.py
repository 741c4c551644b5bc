"""Benchmarks behind `hubpulse bench`."""
