"""hubpulse_gateway."""
