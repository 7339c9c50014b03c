"""The one console: every message and progress bar of headstart goes through it (stderr), so
one switch (``console.quiet``, set on processes other than rank 0 of a group and during a
search's trials) silences all of them."""

from __future__ import annotations

from rich.console import Console

console = Console(stderr=True)
