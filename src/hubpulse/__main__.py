"""`python -m hubpulse` is the `hubpulse` command."""

from hubpulse.cli import main

main()
