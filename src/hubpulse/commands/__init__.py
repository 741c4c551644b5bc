"""One module per command group; each exposes a typer app or commands registered in hubpulse.cli."""
