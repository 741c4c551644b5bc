"""hubpulse_metrics."""
