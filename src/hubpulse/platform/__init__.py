"""The embedded platform: backing stores and services as supervised OS processes (`hubpulse up`)."""
