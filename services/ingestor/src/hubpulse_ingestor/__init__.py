"""hubpulse ingestor service: walks the Hugging Face Hub each cycle and emits daily model snapshots."""
