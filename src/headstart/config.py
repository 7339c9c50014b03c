"""Every knob of a training run, in one frozen dataclass, and its YAML form.

``None`` means "let the rules in ``finetune/rules.py`` decide from the data"; the run folder
keeps both what was asked (``requested``) and what was used (``resolved``), with the reason for
each decided value, so any run can be reproduced and explained.

Each field is the one source of its knob: its default, and its one-line help in
``metadata["help"]``, from which ``headstart train`` builds its option (so a new field is a new
flag, with nothing written twice). The metadata may also say how the command line spells it:
``flags`` (the option names; default ``--field-name``), ``negation`` (the switch that turns a
true-by-default boolean off) and ``cli`` (``False``: not a flag of its own; ``"argument"``: the
positional argument).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, HeadstartError


def knob(default: Any, help: str, **cli: Any) -> Any:
    """A ``TrainConfig`` field: its default, its one-line help and how the CLI spells it."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass(frozen=True)
class TrainConfig:
    """Configuration of ``headstart train``: one field per knob, each documented in its
    ``metadata["help"]`` (``headstart train --help`` prints them)."""

    data: str = field(metadata={
        "help": "Class-per-folder directory, a path,label CSV, or a built-in set: fashion-mnist, fashion-mnist:/dir, digits.",
        "cli": "argument",
    })
    output: str = knob("runs/latest", "Run folder to write.", flags=("--output", "-o"))
    backbone: str = knob("efficientnet_lite0", "A registered architecture (`headstart models` shows them).")
    init_from: str | None = knob(
        None, "Start from a finished run's network, head included (same backbone and classes), instead of --weights: e.g. a "
        "teacher that goes on learning from its own pseudo-labels."
    )
    backbone_from: str | None = knob(
        None, "Start the backbone's stages from a body that `headstart pretrain` wrote (e.g. runs/body; same --backbone), with a "
        "new head, instead of --weights."
    )
    weights: str = knob("default", "'default' (installed ImageNet weights), a state-dict file, or 'none' (random initialisation).")
    strategy: str = knob("auto", "How to fine-tune: auto measures the data and chooses (see `headstart advise`), or a fixed strategy (`headstart list strategies`).")
    method: str = knob(
        "auto", "The training method (`headstart list methods` shows each, with its options); auto: supervised, or with --unlabeled "
        "a teacher and a Noisy Student round (see `headstart selftrain`)."
    )
    method_options: dict | None = knob(
        None, "An option of the method, as key=value; repeat for more (`headstart list methods`; YAML: a mapping).",
        flags=("--option", "-O"),
    )
    freeze_stages: int | None = knob(
        None, "For partial: number of leading stages kept frozen (default: half; auto: from the stage-wise probe)."
    )
    warmup_epochs: int = knob(
        0, "Head-only epochs before the chosen stages unfreeze, so a random head does not send large gradients into pretrained layers."
    )
    image_size: int | None = knob(None, "Input side in pixels (default: from the data and strategy).")
    epochs: int | None = knob(None, "Training epochs (default: ~600 optimizer steps, at most 60 epochs when layers train).")
    batch_size: int | None = knob(None, "Batch size (default 64, smaller for tiny sets).")
    lr: float | None = knob(None, "Head learning rate (AdamW; default 1e-3 at batch 64).")
    backbone_lr_mult: float | None = knob(
        None, "Body learning rate as a fraction of the head's (auto: 1/10 for data like the pretraining images, 1 for different "
        "data; 1/10 for fixed strategies)."
    )
    stage_lr_decay: float = knob(1.0, "Extra learning-rate factor per stage towards the input (1: none; 0.7 is usual).")
    weight_decay: float = knob(0.05, "AdamW weight decay.")
    label_smoothing: float = knob(0.1, "Label smoothing of the cross-entropy.")
    drop_rate: float = knob(0.1, "Dropout before the head.")
    drop_path_rate: float = knob(0.0, "Stochastic depth: the last residual block is skipped with this probability in training (0: off; 0.2 usual).")
    augment: str | list | None = knob(
        None, "A policy name, or transforms 'crop:0.6,hflip,rotate:10' (YAML: also a list of them; `headstart augment list`; "
        "default: none when the body is frozen, else light)."
    )
    augment_strength: float | None = knob(None, "Scale every magnitude of the policy (1 = as written; default: auto picks it).")
    invariances: str | dict | None = knob(
        None, "Transforms that keep labels, e.g. 'hflip,rotate:15' or per class 'hflip,rotate:15;6=hflip;9=hflip' (YAML: a mapping "
        "with 'all' and class names): the policy keeps only these, magnitudes capped."
    )
    cutmix: float = knob(0.0, "CutMix Beta(α, α) per batch (0: off; 1.0 usual).")
    mixup: float = knob(0.0, "MixUp Beta(α, α) per batch (0: off; 0.2 usual). With --cutmix: one of the two per batch.")
    labels_per_class: int | None = knob(None, "Keep only K labeled images per class; the rest becomes the unlabeled pool.")
    val: str | None = knob(None, "Separate validation data (otherwise a stratified split when classes are big enough).")
    val_fraction: float | None = knob(None, "Share of labeled images held out for validation.")
    unlabeled: str | None = knob(
        None, "Unlabeled images for --method pseudolabel/fixmatch: a folder (any depth; class subfolders are not used for "
        "training), or 'pool' with --labels-per-class (the rest of the training split, its labels hidden)."
    )
    unlabeled_limit: int | None = knob(None, "Use at most N of the unlabeled images (a seeded draw; default: all).")
    transductive: bool = knob(
        False, "Keep unlabeled images that are also evaluation images (same content); otherwise they are dropped so scores stay honest."
    )
    teacher: str | None = knob(
        None, "Where --method pseudolabel takes its targets: a finished run folder (its predictions on the unlabeled images; "
        "several folders separated by commas: the mean of their predictions), "
        "'propagate' (label spreading over the frozen body's features), or none: the model being trained labels them itself."
    )
    teachers: int | None = knob(
        None, "With --unlabeled and --method auto: how many supervised teachers to train on the same labels (seeds --seed, "
        "--seed+1, ...) and label the unlabeled images with together (default: as many as --time-budget allows, at most 4)."
    )
    knn_k: int | None = knob(None, "Neighbours for --strategy knn (default: chosen on validation).")
    seed: int = knob(0, "Seed for splits, initialisation and batch order.")
    split_seed: int | None = knob(
        None, "Seed for the --labels-per-class draw and the validation split alone (default: --seed), so runs of several "
        "seeds can share their labeled images (an ensemble's members, a teacher's students)."
    )
    on_bad_image: str = knob("skip", "skip: list unreadable files and go on | error: stop at the first.")
    device: str = knob("auto", "auto | cpu | cuda | cuda:1 ...")
    num_workers: int = knob(2, "Processes decoding image files.")
    progress: bool = knob(True, "Show progress bars (--no-progress hides them).", flags=(), negation="--no-progress")
    feature_cache: bool = knob(
        True, "Reuse frozen-backbone features from the disk cache (HEADSTART_CACHE), keyed by weights, preprocessing and data, "
        "so the next linear probe or kNN on the same images skips the network.", negation="--no-feature-cache",
    )
    checkpoint_every: int = knob(0, "Also checkpoint every N optimizer steps inside an epoch (0: at epoch ends only).")
    resume: bool = knob(
        False, "Continue the run in output from its last checkpoint (same config), ending with the same weights and metrics as an "
        "uninterrupted run (the CLI's --resume RUN).", cli=False,
    )
    overwrite: bool = knob(False, "Replace a finished run already in --output (otherwise refused, so a typo never destroys a trained model).")
    time_budget: float | None = knob(
        None, "Minutes the run may take: epochs stop once the next would not fit (reported); with --unlabeled, the pool and the "
        "rounds are sized to fit."
    )
    search: bool = knob(False, "With --strategy auto: try the advisor's top candidates briefly, keep the best on validation.")
    # kept in the run (not only in the environment), so that --resume reads the same files
    max_image_pixels: int | None = knob(
        None, "Refuse images with more pixels than this, a guard against decompression bombs; raise it for trusted large scans."
    )

    def __post_init__(self) -> None:
        if self.method_options is not None and not isinstance(self.method_options, dict):
            raise ConfigError(
                f"method_options must be a mapping of option names to values (-O key=value), got {self.method_options!r}"
            )
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
    "drop_path_rate": (0, 1, False, "0 turns stochastic depth off"),
    "augment_strength": (0, None, False, "0 turns the policy off; 1 is as written"),
    "cutmix": (0, None, False, "0 turns it off; 1.0 is usual"),
    "mixup": (0, None, False, "0 turns it off; 0.2 is usual"),
    "val_fraction": (0, 1, False, "0 trains on every label; 0.2 is usual"),
    "unlabeled_limit": (0, None, True, "leave it out to use every unlabeled image"),
    "knn_k": (0, None, True, "leave it out to choose k on validation"),
    "num_workers": (0, None, False, "0 decodes in the main thread"),
    "time_budget": (0, None, True, "e.g. 30 for half an hour; leave it out for no limit"),
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
