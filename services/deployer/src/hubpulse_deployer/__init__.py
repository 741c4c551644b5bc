"""hubpulse_deployer."""
