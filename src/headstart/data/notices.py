"""What loading left out or complained about, told once on the console."""

from __future__ import annotations

from typing import Sequence

from ..console import console
from .imageset import ImageSet
from .sources import ignored_message


def report_skipped(imageset: ImageSet) -> None:
    """What loading left out or complained about: unreadable files (each with its reason), files
    that are not images (one line per folder), files that decoded with warnings (one line)."""
    if imageset.skipped:
        console.print(f"[yellow]skipped {len(imageset.skipped)} unreadable file(s):[/yellow]")
        for path, reason in imageset.skipped[:20]:
            console.print(f"  {path}: {reason}")
        if len(imageset.skipped) > 20:
            console.print(f"  ... and {len(imageset.skipped) - 20} more")
    report_ignored(imageset.ignored, imageset.root or imageset.name)
    report_warned(imageset.warned)


def report_ignored(paths: Sequence[str], where: str) -> None:
    line = ignored_message(paths, where)
    if line:
        console.print(f"[yellow]{line}[/yellow]")


def report_warned(warned: Sequence[tuple[str, str]]) -> None:
    if warned:
        path, text = warned[0]
        console.print(
            f"[yellow]{len(warned)} file(s) decoded despite warnings from the image decoder[/yellow] "
            f"(e.g. {path}: {text}); they are used as decoded"
        )
