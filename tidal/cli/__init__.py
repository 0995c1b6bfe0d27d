"""The `tidal` command line."""

from tidal.cli.main import main

__all__ = ["main"]
