"""CLI commands for the build stage."""

import typer


def register(app: typer.Typer) -> None:
    """Add this stage's commands to app."""
