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

from .errors import HeadstartError


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


def dump_yaml(path: str | Path, data: dict[str, Any]) -> None:
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def load_yaml(path: str | Path) -> dict[str, Any]:
    try:
        return yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise HeadstartError(f"cannot read configuration {path}: {exc}") from exc
