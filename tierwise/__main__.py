"""`python -m tierwise` runs the CLI."""

from tierwise.cli import main

main()
