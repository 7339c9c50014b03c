"""A training run's data: the labeled set, the few-label draw, the unlabeled folder, and the
split into training and validation images (what ``splits.json`` records)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .imageset import ImageSet, check_trainable
from .notices import report_skipped
from .sources import resolve
from .splits import few_shot, stratified_split
from .tensors import align_classes


@dataclass
class TrainingData:
    """A run's labeled images (``full`` less the pool ``--labels-per-class`` leaves unlabeled),
    the unlabeled folder's images, and once ``split``, the training and validation sets with
    their indices into ``full``."""

    full: ImageSet
    labeled_idx: np.ndarray
    pool_idx: np.ndarray
    unlabeled: ImageSet | None
    train_set: ImageSet | None = None
    val_set: ImageSet | None = None
    train_idx: np.ndarray | None = None
    val_idx: np.ndarray = field(default_factory=lambda: np.array([], dtype=np.int64))
    pool_record: dict[str, Any] | None = None  # what was found about the unlabeled images (``semi.pool.Pool.record``)

    @property
    def labeled(self) -> ImageSet:
        return self.full.subset(self.labeled_idx)

    def split(self, config: Any, val_fraction: float) -> None:
        """The training and validation sets: the separate ``--val`` set, or a stratified split."""
        labeled = self.labeled
        self.train_set, self.train_idx = labeled, self.labeled_idx
        if config.val:
            self.val_set = align_classes(resolve(config.val, split="test", on_bad_image=config.on_bad_image), list(self.full.classes), config.val)
        elif val_fraction > 0:
            tr, va = stratified_split(labeled.labels, val_fraction, split_seed(config))
            self.train_set, self.val_set = labeled.subset(tr), labeled.subset(va)
            self.train_idx, self.val_idx = self.labeled_idx[tr], self.labeled_idx[va]


def split_seed(config: Any) -> int:
    """The seed of the labeled draw and the validation split: ``--split-seed``, else ``--seed``."""
    return config.seed if getattr(config, "split_seed", None) is None else config.split_seed


def read_training_data(config: Any) -> TrainingData:
    """The training data ``config`` (a ``TrainConfig``) names: read, checked, reported, and the
    few-label draw made."""
    full = resolve(config.data, split="train", on_bad_image=config.on_bad_image)
    report_skipped(full)
    check_trainable(full)
    labeled_idx, pool_idx = np.arange(len(full)), np.array([], dtype=np.int64)
    if config.labels_per_class:
        labeled_idx, pool_idx = few_shot(full.labels, config.labels_per_class, split_seed(config))
    return TrainingData(full, labeled_idx, pool_idx, None)




def splits_record(config: Any, data: TrainingData) -> dict[str, Any]:
    """What ``splits.json`` keeps, so every split of the run can be rebuilt."""
    return {
        "data": config.data, "seed": config.seed, "split_seed": split_seed(config), "labels_per_class": config.labels_per_class,
        "labeled_indices": data.labeled_idx.tolist(), "train_indices": data.train_idx.tolist(), "val_indices": data.val_idx.tolist(),
        "val_data": config.val, "unlabeled_pool_size": int(len(data.pool_idx)), "unlabeled_folder": config.unlabeled,
        "unlabeled_folder_images": None if data.unlabeled is None else len(data.unlabeled),
        "unlabeled": data.pool_record,
        "skipped_files": [list(s) for s in data.full.skipped],
    }
