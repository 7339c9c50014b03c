"""Checkpoints that let a killed run continue exactly where it stopped.

A checkpoint holds what other tools tend to lose on resume: besides model and optimizer, the
phase of fine-tuning (warm-up or main, which stages are frozen), the position inside the epoch
(the batch order's generator state and how many batches were done), the running sums of the
epoch, every random number generator, and the best weights so far. Files are written to a
temporary name and renamed, so a kill at any moment leaves the previous checkpoint intact; they
hold only tensors and plain values and load with ``weights_only=True``.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..fileio import atomic_write


def seed_everything(seed: int) -> None:
    """Seed every generator a run draws from (torch, numpy, random)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every generator a training step draws from (dropout, augmentation, numpy, random)."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_gauss": [int(np_state[3]), float(np_state[4])],
        "python_version": py_version,
        "python_internal": torch.tensor(py_internal, dtype=torch.int64),
        "python_gauss": py_gauss,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    has_gauss, gauss = state["numpy_gauss"]
    np.random.set_state(("MT19937", keys, state["numpy_pos"], int(has_gauss), float(gauss)))
    random.setstate((state["python_version"], tuple(int(v) for v in state["python_internal"].tolist()), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Checkpointer:
    """Writes and reads ``<folder>/last.pt``.

    Epoch ends are saved at most once per ``min_interval_s`` seconds: a save of EfficientNet-
    Lite0 with its AdamW state and best weights is ~54 MB and ~80 ms, which 60 one-second
    epochs of a small data set would otherwise pay 60 times for little safety. ``every_steps``
    adds saves inside long epochs, always taken.
    """

    def __init__(self, folder: str | Path, *, every_steps: int = 0, min_interval_s: float = 10.0) -> None:
        self.folder = Path(folder)
        self.path = self.folder / "last.pt"
        self.every_steps = every_steps
        self.min_interval_s = min_interval_s
        self._last_save = float("-inf")

    def due(self) -> bool:
        """Whether an epoch-end save is due (the interval since the last save has passed)."""
        return time.monotonic() - self._last_save >= self.min_interval_s

    def save(self, state: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, lambda tmp: torch.save(state, tmp))
        self._last_save = time.monotonic()

    def load(self) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        return torch.load(self.path, map_location="cpu", weights_only=True)

    def clear(self) -> None:
        """Remove the checkpoint and any half-written temporary left by a kill during a save."""
        if self.path.exists():
            self.path.unlink()
        for tmp in self.folder.glob(".last.*.tmp") if self.folder.is_dir() else []:
            tmp.unlink(missing_ok=True)
        if self.folder.is_dir() and not any(self.folder.iterdir()):
            self.folder.rmdir()
