"""`python -m tidal …` is the `tidal` command, for environments whose scripts are not on PATH."""

from tidal.cli import main

main(prog_name="tidal")
