"""hubpulse metrics service: latency, error rate, usage analytics and live pushes."""
