"""Where fixed pseudo-label targets come from (``--teacher``): a finished run's class
probabilities for every unlabeled image, computed once in batches and kept in the student's
run folder (``teacher_targets.safetensors``), so a resumed student reads the same table.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..console import console
from ..errors import ConfigError, DataError

TARGETS_FILE = "teacher_targets.safetensors"
PROPAGATE = "propagate"


def run_teacher_table(teacher: str, pool_x: torch.Tensor, classes: list[str], *, device: str = "auto", batch_size: int = 256) -> torch.Tensor:
    """The class probabilities ``(P, C)`` of the finished run ``teacher`` for the uint8 pool
    images ``pool_x``, in the student's class order (the teacher must have the same classes)."""
    from ..predictor import Predictor

    path = Path(teacher)
    if not (path / "model.json").is_file():
        raise ConfigError(f"--teacher {teacher} is not a finished run folder (no model.json); train the teacher first, or give "
                          f"--teacher {PROPAGATE}")
    predictor = Predictor(path, device=device)
    if sorted(predictor.classes) != sorted(classes):
        raise DataError(f"the teacher {teacher} knows the classes {predictor.classes}, this run has {classes}; a teacher must "
                        "be trained on the same classes")
    t0 = time.perf_counter()
    probs = predictor.proba_tensor(pool_x, batch_size=batch_size)
    order = [predictor.classes.index(c) for c in classes]
    console.print(f"  [dim]teacher {teacher} labelled {len(pool_x)} unlabeled images in {time.perf_counter() - t0:.0f} s[/dim]")
    return torch.from_numpy(np.ascontiguousarray(probs[:, order])).float()


def save_table(folder: Path, table: torch.Tensor, info: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    save_file({"probs": table.contiguous()}, str(folder / TARGETS_FILE), metadata={k: str(v) for k, v in info.items()})


def load_table(folder: Path, pool_size: int) -> torch.Tensor | None:
    """The table a run saved (``None`` if none); refused when the pool changed size."""
    path = folder / TARGETS_FILE
    if not path.is_file():
        return None
    from safetensors.torch import load_file

    table = load_file(str(path))["probs"]
    if len(table) != pool_size:
        raise DataError(f"{path} holds targets for {len(table)} unlabeled images, this run has {pool_size}; resume with the same "
                        "--unlabeled and --unlabeled-limit")
    return table


def table_summary(table: torch.Tensor, truth: np.ndarray | None) -> dict[str, Any]:
    """How confident the table is, and where hidden labels are known, how right."""
    conf, pred = table.max(1)
    out: dict[str, Any] = {"images": len(table), "mean_confidence": float(conf.mean())}
    for q in (0.5, 0.8, 0.9, 0.95):
        out[f"share_conf_{q}"] = float((conf >= q).float().mean())
    if truth is not None and (truth >= 0).any():
        t = torch.from_numpy(truth)
        known = t >= 0
        right = (pred == t) & known
        out["accuracy"] = float(right.sum() / known.sum())
        order = torch.argsort(conf, descending=True)
        for share in (0.5, 0.7):
            top = order[: max(1, int(share * len(order)))]
            k = known[top]
            out[f"accuracy_top_{int(share * 100)}"] = float(right[top].sum() / k.sum().clamp_min(1))
    return out
