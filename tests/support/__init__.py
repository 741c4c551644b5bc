"""Helpers shared by the test areas (one home, imported as `support.<module>`)."""
