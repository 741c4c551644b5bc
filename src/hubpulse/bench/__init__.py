"""Benchmarks behind `hubpulse bench ...`: one module per benchmark, commands stay thin."""
