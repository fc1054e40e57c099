"""``python -m rmcore`` runs the CLI."""

from rmcore.cli import main

main()
