"""hubpulse_scorer."""
