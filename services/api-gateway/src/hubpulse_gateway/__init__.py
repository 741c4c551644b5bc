"""hubpulse gateway service: the one public API of hubpulse, and the web app."""
