"""hubpulse_auth."""
