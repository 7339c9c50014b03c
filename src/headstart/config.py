"""Every knob of a training run, in one frozen dataclass, and its YAML form.

``None`` means "let the rules in ``finetune/rules.py`` decide from the data"; the run folder
keeps both what was asked (``requested``) and what was used (``resolved``), with the reason for
each decided value, so any run can be reproduced and explained.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, HeadstartError


@dataclass(frozen=True)
class TrainConfig:
    """Configuration of ``headstart train`` (CLI flags map one-to-one onto these fields).

    Attributes:
        data: a class-per-folder directory, a ``path,label`` CSV, or a built-in set name
            (``fashion-mnist``, ``fashion-mnist:/dir``, ``digits``).
        output: the run folder to write.
        backbone: a registered architecture (``headstart models``).
        weights: ``default`` (weights shipped with headstart, if any), a state-dict path, or
            ``none`` for random initialisation.
        strategy: ``auto`` (measure the data and choose: ``headstart advise``), ``linear``,
            ``partial``, ``full`` or ``knn``.
        freeze_stages: for ``partial``, how many leading stages stay frozen.
        warmup_epochs: head-only epochs before the chosen stages unfreeze, so a random head
            does not send large gradients into pretrained layers.
        image_size: input side in pixels.
        epochs, batch_size, lr: optimisation; ``lr`` is the head's rate.
        backbone_lr_mult: body learning rate as a fraction of the head's (``auto`` chooses 1/10
            for data similar to the pretraining images, 1 for different data; 1/10 otherwise).
        stage_lr_decay: further factor per stage towards the input (1 = none).
        weight_decay, label_smoothing, drop_rate: regularisation.
        augment: a policy name (``none``, ``light``: crop + flip, ``standard``: + rotation,
            shifts, brightness/contrast, ``strong``: crop + flip + RandAugment), a transform list
            ``"crop:0.6,hflip,rotate:10"``, or (YAML) a list ``[crop: 0.6, hflip, rotate: 10]``
            (``headstart augment list`` shows the families).
        augment_strength: scales every magnitude of the policy (1 = as written; ``auto`` picks it).
        invariances: transforms that keep labels, ``"hflip,rotate:15"``, per class
            ``"hflip,rotate:15;6=hflip;9=hflip"`` (YAML: a mapping with ``all`` and class
            names): the policy drops every other transform and caps magnitudes at these.
        cutmix, mixup: Beta(α, α) of batch-level CutMix / MixUp (0 = off; 1.0 / 0.2 usual);
            both on: one of the two per batch.
        labels_per_class: keep only K labeled images per class (the rest becomes the
            unlabeled pool), for few-label experiments.
        val: a separate validation set; otherwise a stratified split of the training data.
        val_fraction: share of the labeled images held out for validation.
        unlabeled: a folder of unlabeled images (recorded for later methods).
        knn_k: neighbours for ``knn`` (chosen on validation when not given).
        seed: seeds data splits, initialisation and batch order.
        on_bad_image: ``skip`` (list and skip unreadable files) or ``error``.
        device: ``auto``, ``cpu``, ``cuda`` ...
        num_workers: decoding processes for image folders.
        progress: show progress bars.
        feature_cache: keep frozen-backbone features on disk (``HEADSTART_CACHE``), keyed by
            weights, preprocessing and data, so the next linear probe or kNN on the same images
            skips the network entirely.
        checkpoint_every: also checkpoint every N optimizer steps inside an epoch (0: only at
            epoch ends), for epochs long enough that losing one hurts.
        resume: continue the run in ``output`` from its last checkpoint (same config), ending
            with the same weights and metrics as an uninterrupted run.
        overwrite: replace a finished run already in ``output`` (otherwise refused, so a
            typo never destroys a trained model).
        search: with ``strategy="auto"``, try the advisor's top candidates briefly and keep
            the best on validation (successive halving) instead of trusting the rules alone.
        max_image_pixels: refuse image files with more pixels than this (decompression-bomb
            guard; ``None``: ``$HEADSTART_MAX_IMAGE_PIXELS`` or Pillow's 89,478,485). Kept in the
            run so that ``--resume`` reads the same files.
    """

    data: str
    output: str = "runs/latest"
    backbone: str = "efficientnet_lite0"
    weights: str = "default"
    strategy: str = "auto"
    freeze_stages: int | None = None
    warmup_epochs: int = 0
    image_size: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    backbone_lr_mult: float | None = None
    stage_lr_decay: float = 1.0
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    drop_rate: float = 0.1
    augment: str | list | None = None
    augment_strength: float | None = None
    invariances: str | dict | None = None
    cutmix: float = 0.0
    mixup: float = 0.0
    labels_per_class: int | None = None
    val: str | None = None
    val_fraction: float | None = None
    unlabeled: str | None = None
    knn_k: int | None = None
    seed: int = 0
    on_bad_image: str = "skip"
    device: str = "auto"
    num_workers: int = 2
    progress: bool = True
    feature_cache: bool = True
    checkpoint_every: int = 0
    resume: bool = False
    overwrite: bool = False
    search: bool = False
    max_image_pixels: int | None = None

    def __post_init__(self) -> None:
        for name, (lo, hi, lo_open, why) in _RANGES.items():
            value = getattr(self, name)
            if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            below = value <= lo if lo_open else value < lo
            if below or (hi is not None and value >= hi):
                flag = "--" + name.replace("_", "-")
                bound = f"{'above' if lo_open else 'at least'} {lo:g}" + (f" and below {hi:g}" if hi is not None else "")
                raise ConfigError(f"{flag} must be {bound}, got {value:g}; {why}")

    def with_updates(self, **changes: Any) -> "TrainConfig":
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise HeadstartError(f"unknown configuration keys {unknown}; known keys: {sorted(known)}")
        return cls(**d)


# field: (lowest, upper bound (exclusive) or None, whether the lowest itself is refused, the hint)
_RANGES: dict[str, tuple[float, float | None, bool, str]] = {
    "labels_per_class": (0, None, True, "leave it out to train on every labeled image"),
    "freeze_stages": (0, None, False, "0 freezes nothing; `headstart models` shows the stages"),
    "warmup_epochs": (0, None, False, "0 unfreezes from the start"),
    "image_size": (0, None, True, "e.g. 112; leave it out to choose from the data"),
    "epochs": (0, None, True, "leave it out for ~600 optimizer steps"),
    "batch_size": (0, None, True, "leave it out for 64 (smaller for tiny sets)"),
    "lr": (0, None, True, "leave it out for 1e-3 at batch 64"),
    "backbone_lr_mult": (0, None, False, "0 keeps the trainable body still; 1 is the head's rate"),
    "stage_lr_decay": (0, None, True, "1 means no decay; 0.7 is usual"),
    "weight_decay": (0, None, False, "0 turns it off"),
    "label_smoothing": (0, 1, False, "0 turns it off; 0.1 is usual"),
    "drop_rate": (0, 1, False, "0 turns dropout off"),
    "augment_strength": (0, None, False, "0 turns the policy off; 1 is as written"),
    "cutmix": (0, None, False, "0 turns it off; 1.0 is usual"),
    "mixup": (0, None, False, "0 turns it off; 0.2 is usual"),
    "val_fraction": (0, 1, False, "0 trains on every label; 0.2 is usual"),
    "knn_k": (0, None, True, "leave it out to choose k on validation"),
    "num_workers": (0, None, False, "0 decodes in the main thread"),
    "checkpoint_every": (0, None, False, "0 checkpoints at epoch ends only"),
    "max_image_pixels": (0, None, True, "e.g. 200000000 for large trusted scans"),
}


def dump_yaml(path: str | Path, data: dict[str, Any]) -> None:
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def load_yaml(path: str | Path) -> dict[str, Any]:
    try:
        return yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise HeadstartError(f"cannot read configuration {path}: {exc}") from exc
