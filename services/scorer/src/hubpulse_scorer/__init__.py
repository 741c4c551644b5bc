"""hubpulse scorer service: scores features with the current trend model version."""
