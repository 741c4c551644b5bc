"""hubpulse_ingestor."""
