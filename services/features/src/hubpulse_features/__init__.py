"""hubpulse_features."""
