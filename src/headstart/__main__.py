"""``python -m headstart`` runs the CLI (also how torchrun starts it)."""

from .cli import main

main()
