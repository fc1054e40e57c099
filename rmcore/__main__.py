"""``python -m rmcore`` runs the CLI."""

from rmcore.cli import main

if __name__ == "__main__":
    main()
