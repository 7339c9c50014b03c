"""The unlabeled images of a run: read, checked against the labeled and evaluation images, and
described for the run folder.

``--unlabeled DIR`` reads every image under ``DIR`` (any depth). Labels are never taken from it
for training; when its subfolders are named like the run's classes, the folder names are kept
as *hidden truth*, used only to report how often pseudo-labels are right. ``--unlabeled pool``
(a built-in set or any labeled data with ``--labels-per-class K``) is the rest of the training
split, its labels hidden the same way.

Every unlabeled image is hashed by content (a file's bytes, an array image's pixels) and
compared with the labeled images and the evaluation images (the validation images, a ``--val``
set, and a built-in set's test split). Labeled duplicates are dropped (they already carry a
true label); evaluation duplicates are dropped too, unless ``--transductive`` says the
evaluation images may be learned from without their labels. Both are reported.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..console import console
from ..data.imageset import UNLABELED, ImageSet
from ..data.notices import report_skipped
from ..data.sources import is_builtin, load_unlabeled, resolve
from ..errors import ConfigError, DataError

POOL = "pool"
"""``--unlabeled pool``: the training split's images that ``--labels-per-class`` left unlabeled."""


def content_hashes(imageset: ImageSet) -> list[str]:
    """One hash per image of its content: the SHA-256 of a file's bytes (computed when the
    files were checked, or now), or of an array image's pixels with its shape."""
    if imageset.is_array:
        arr = np.ascontiguousarray(imageset.images)
        return [hashlib.blake2b(str(a.shape).encode() + a.tobytes(), digest_size=20).hexdigest() for a in arr]
    if imageset.digests is not None:
        return list(imageset.digests)
    out = []
    for path in imageset.images:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        out.append(h.hexdigest())
    return out


@dataclass
class Pool:
    """A run's unlabeled images and what was found about them.

    ``images`` carry label ``-1``; ``truth`` holds hidden labels (``-1`` where unknown), used only
    to report pseudo-label accuracy, never for training. ``source`` is ``"pool"`` or the folder.
    """

    images: ImageSet
    truth: np.ndarray
    source: str
    found: int  # images read, before duplicates were dropped and the limit applied
    labeled_duplicates: int = 0
    eval_duplicates: int = 0
    eval_duplicates_kept: bool = False
    limited_to: int | None = None
    examples: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def has_truth(self) -> bool:
        return bool((self.truth >= 0).any())

    def record(self) -> dict[str, Any]:
        """What ``splits.json`` and the report keep about the pool."""
        return {
            "source": self.source, "found": self.found, "used": len(self), "labeled_duplicates_dropped": self.labeled_duplicates,
            "eval_duplicates": self.eval_duplicates, "eval_duplicates_kept": self.eval_duplicates_kept, "limited_to": self.limited_to,
            "hidden_truth": int((self.truth >= 0).sum()), "duplicate_examples": self.examples[:10],
        }


def _folder_truth(images: ImageSet, root: str, classes: list[str]) -> np.ndarray:
    """Hidden labels from a folder's first-level subfolder names, where they name a class."""
    index = {c: i for i, c in enumerate(classes)}
    truth = np.full(len(images), UNLABELED, dtype=np.int64)
    for i, path in enumerate(images.images):
        rel = os.path.relpath(path, root).split(os.sep)
        if len(rel) > 1 and rel[0] in index:
            truth[i] = index[rel[0]]
    return truth


def read_pool(
    spec: str,
    *,
    full: ImageSet,
    pool_idx: np.ndarray,
    labeled: ImageSet,
    evaluation: list[ImageSet],
    data_spec: str,
    transductive: bool = False,
    limit: int | None = None,
    seed: int = 0,
    on_bad_image: str = "skip",
) -> Pool:
    """The unlabeled images ``spec`` names (``"pool"`` or a folder), duplicates of labeled and
    evaluation images dropped (evaluation ones kept with ``transductive``), at most ``limit`` of
    them (a seeded draw).

    Raises:
        ConfigError: ``pool`` without ``--labels-per-class`` (there is no rest of the split).
        DataError: the folder is missing, empty, holds only bad files, or nothing is left after
            dropping duplicates.
    """
    if spec == POOL:
        if len(pool_idx) == 0:
            raise ConfigError(
                "--unlabeled pool is the part of the training split that --labels-per-class leaves unlabeled; give "
                "--labels-per-class K (or --unlabeled DIR for a folder of unlabeled images)"
            )
        images = full.subset(pool_idx)
        truth = images.labels.copy()
        images.labels = np.full(len(images), UNLABELED, dtype=np.int64)
        source = f"{data_spec} (the {len(pool_idx)} training images --labels-per-class left unlabeled)"
    else:
        images = load_unlabeled(spec, on_bad_image=on_bad_image)
        report_skipped(images)
        truth = _folder_truth(images, spec, list(full.classes))
        source = os.path.abspath(spec)  # absolute: an ensemble built elsewhere later finds the folder (held-out checks)
    found = len(images)
    hashes = content_hashes(images)
    labeled_h = set(content_hashes(labeled))
    eval_h: set[str] = set()
    for ev in evaluation:
        eval_h.update(content_hashes(ev))
    in_labeled = np.array([h in labeled_h for h in hashes], dtype=bool)
    in_eval = np.array([h in eval_h for h in hashes], dtype=bool) & ~in_labeled
    drop = in_labeled | (in_eval & (not transductive))
    names = images.images if not images.is_array else [f"{data_spec} pool image {int(i)}" for i in pool_idx]
    examples = [str(names[i]) for i in np.flatnonzero(in_labeled | in_eval)[:10]]
    keep = np.flatnonzero(~drop)
    if len(keep) == 0:
        raise DataError(
            f"every one of the {found} unlabeled images in {spec} is also a labeled or evaluation image (same content); "
            "give a folder of other images" + ("" if transductive else ", or --transductive to learn from the evaluation images")
        )
    limited = None
    if limit is not None and limit < len(keep):
        keep = np.sort(np.random.default_rng(seed).choice(keep, size=limit, replace=False))
        limited = limit
    pool = Pool(
        images=images.subset(keep), truth=truth[keep], source=source, found=found, labeled_duplicates=int(in_labeled.sum()),
        eval_duplicates=int(in_eval.sum()), eval_duplicates_kept=transductive, limited_to=limited, examples=examples,
    )
    _report(pool, spec)
    return pool


def evaluation_sets(data_spec: str, val_set: ImageSet | None, on_bad_image: str) -> list[ImageSet]:
    """The images a run is judged on: its validation images and, for a built-in set, its test split."""
    out = [] if val_set is None else [val_set]
    if is_builtin(data_spec):
        out.append(resolve(data_spec, split="test", on_bad_image=on_bad_image))
    return out


def _report(pool: Pool, spec: str) -> None:
    parts = [f"{len(pool)} unlabeled images from {pool.source}"]
    if pool.labeled_duplicates:
        parts.append(f"{pool.labeled_duplicates} dropped: same content as a labeled image")
    if pool.eval_duplicates:
        parts.append(
            f"{pool.eval_duplicates} same as an evaluation image: "
            + ("kept (--transductive)" if pool.eval_duplicates_kept else "dropped, so the scores stay honest (--transductive keeps them)")
        )
    if pool.limited_to is not None:
        parts.append(f"a seeded draw of {pool.limited_to} (--unlabeled-limit)")
    if pool.has_truth:
        parts.append(f"hidden labels of {int((pool.truth >= 0).sum())} kept only to score the pseudo-labels")
    console.print("  [bold]unlabeled[/bold]: " + "; ".join(parts))
    if pool.examples and (pool.labeled_duplicates or pool.eval_duplicates):
        console.print(f"  [dim]duplicates, e.g. {', '.join(pool.examples[:3])}[/dim]")
