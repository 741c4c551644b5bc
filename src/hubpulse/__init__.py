"""hubpulse: the platform command line and the embedded platform that runs every service locally."""
