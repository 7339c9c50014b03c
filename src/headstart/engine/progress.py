"""Progress bars for long work (rich), silent when asked or when nothing is listening."""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..console import console

__all__ = ["EpochProgress", "console"]


class EpochProgress:
    """One bar per epoch (or per feature pass) with running loss and accuracy.

    Epoch bars are transient (the loop prints a one-line summary every few epochs instead), so
    60 epochs leave ~10 lines behind, not 60.
    """

    def __init__(self, description: str, total: int, enabled: bool = True, transient: bool = False) -> None:
        self.enabled = enabled
        self.transient = transient
        self.description = description
        self.total = total
        self._progress: Progress | None = None
        self._task = None

    def __enter__(self) -> "EpochProgress":
        # Bars redraw in place, which only a terminal can show; logs get the summary lines.
        if self.enabled and console.is_terminal and not console.quiet:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=self.transient,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=self.total, stats="")
        return self

    @property
    def active(self) -> bool:
        return self._progress is not None

    def advance(self, **stats: float) -> None:
        if self._progress is not None:
            text = "  ".join(f"{k} {v:.4f}" if k == "loss" else f"{k} {v:.3f}" for k, v in stats.items())
            self._progress.update(self._task, advance=1, stats=text)

    def advance_by(self, steps: int) -> None:
        """Mark steps done before a resume."""
        if self._progress is not None and steps:
            self._progress.update(self._task, advance=steps)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
