"""hubpulse features service: turns daily snapshots into velocity features."""
