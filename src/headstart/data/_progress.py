"""Map a function over many files, in threads, with a progress bar when it takes a while."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence, TypeVar

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from ..console import console

T = TypeVar("T")
R = TypeVar("R")

PROGRESS_THRESHOLD = 200
"""Show a bar above this many items: below it decoding takes about a second and a bar is noise."""


def default_workers() -> int:
    """Threads for decoding: Pillow releases the GIL while decoding, so threads scale to ~8."""
    return min(8, os.cpu_count() or 1)


def map_with_progress(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    description: str,
    num_workers: int = 0,
) -> list[R]:
    """``[fn(x) for x in items]`` in order, on ``num_workers`` threads (0: this thread).

    A transient bar on stderr is shown when there are more than :data:`PROGRESS_THRESHOLD` items.
    """
    show = len(items) > PROGRESS_THRESHOLD and not console.quiet  # one switch silences every bar
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not show,
    )
    results: list[R] = []
    with progress:
        task = progress.add_task(description, total=len(items))
        if num_workers > 0 and len(items) > 1:
            with ThreadPoolExecutor(max_workers=num_workers) as pool:
                for result in pool.map(fn, items):
                    results.append(result)
                    progress.advance(task)
        else:
            for item in items:
                results.append(fn(item))
                progress.advance(task)
    return results
