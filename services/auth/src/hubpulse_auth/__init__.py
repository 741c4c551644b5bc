"""hubpulse auth service: users, tokens, API keys, organisations and roles."""
