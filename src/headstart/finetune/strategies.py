"""Transfer strategies: what is frozen, and which learning rate each trainable part gets.

A strategy is one registered function from (number of stages, requested freeze depth) to the
number of leading stages to freeze. ``linear`` freezes the whole body (the course notes' "freeze
the convolutional base"), ``partial`` the first K stages, ``full`` nothing; ``knn`` freezes
everything and replaces the trained head with a nearest-neighbour search over the training
features (seed 001: classification as search, the memorisation baseline).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from ..backbones import Backbone
from ..errors import ConfigError
from ..registry import Registry
from . import rules


@dataclass(frozen=True)
class StrategyInfo:
    """A registered strategy and how it behaves, so no caller tests its name.

    Attributes:
        frozen_stages: (number of stages, requested freeze depth) → stages frozen.
        trains_head: whether anything is trained (kNN memorises instead).
        frozen_body: the whole body stays as pretrained: its features of an image never
            change, so without random augmentation they are computed once and cached, and
            images are taken at the size the weights were trained at.
        knn_finish: the head is a nearest-neighbour search over the training features.
        max_epochs: the most epochs the default schedule gives it (an epoch of a head on
            cached features costs almost nothing; fine-tuning over a few hundred images for
            long mostly memorises them).
        default_augment: the policy when none is given (none for a frozen body: its features
            are cached).
        takes_freeze_depth: ``--freeze-stages`` chooses how deep it freezes.
    """

    name: str
    description: str
    frozen_stages: Callable[[int, int | None], int]
    trains_head: bool = True
    frozen_body: bool = False
    knn_finish: bool = False
    max_epochs: int = 60
    default_augment: str = "light"
    takes_freeze_depth: bool = False


STRATEGIES: Registry[StrategyInfo] = Registry("strategy")


def _add(info: StrategyInfo) -> None:
    STRATEGIES.register(info.name)(info)


_add(
    StrategyInfo(
        "linear", "freeze the whole body, train a new linear head (linear probe)", lambda n, k: n,
        frozen_body=True, max_epochs=200, default_augment="none",
    )
)


def _partial(n: int, k: int | None) -> int:
    k = rules.default_freeze_stages(num_stages=n) if k is None else k
    if not 0 <= k <= n:
        raise ConfigError(f"--freeze-stages must be between 0 and {n} for this backbone, not {k}")
    return k


_add(StrategyInfo("partial", "freeze the first K stages, fine-tune the rest and the head", _partial, takes_freeze_depth=True))
_add(StrategyInfo("full", "fine-tune every layer (backbone at a lower learning rate)", lambda n, k: 0))
_add(
    StrategyInfo(
        "knn", "no training: nearest neighbours among the training images' features", lambda n, k: n, trains_head=False,
        frozen_body=True, knn_finish=True, default_augment="none",
    )
)


def frozen_stages_for(strategy: str, *, num_stages: int, freeze_stages: int | None) -> int:
    return STRATEGIES.get(strategy).frozen_stages(num_stages, freeze_stages)


def _split_decay(module: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Weights that get weight decay, and the biases/norm scales that should not."""
    decay, no_decay = [], []
    for p in module.parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 else decay).append(p)
    return decay, no_decay


def param_groups(
    model: Backbone,
    *,
    lr: float,
    backbone_lr_mult: float = rules.BACKBONE_LR_MULT,
    stage_lr_decay: float = 1.0,
    weight_decay: float = 0.05,
) -> list[dict]:
    """Optimizer groups: the head at ``lr``; each trainable stage at a lower rate.

    Stage ``i`` (of the trainable ones, counted back from the top) learns at
    ``lr * backbone_lr_mult * stage_lr_decay ** (top - i)``: with the default decay 1.0 every
    stage learns at 1/10 of the head; a decay below 1 (e.g. 0.7) lets stages nearer the input,
    whose generic features need the least change, move even less (discriminative rates).
    Each group carries a ``name`` so logs can show the rate per stage.
    """
    groups: list[dict] = []
    top = model.num_stages - 1

    def add(name: str, module: nn.Module, group_lr: float) -> None:
        decay, no_decay = _split_decay(module)
        if decay:
            groups.append({"name": name, "params": decay, "lr": group_lr, "weight_decay": weight_decay})
        if no_decay:
            groups.append({"name": f"{name}.no_decay", "params": no_decay, "lr": group_lr, "weight_decay": 0.0})

    add("head", model.head, lr)
    for i in range(model.num_stages - 1, model.frozen_stages - 1, -1):
        add(model.stage_names[i], model.stages[i], lr * backbone_lr_mult * stage_lr_decay ** (top - i))
    return groups
