"""The self-training API: ``selftrain`` runs Noisy Student rounds (``semi.selftrain``) through
``train``, scoring each round on the data's test split where it has one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .data.sources import is_builtin
from .runfolder import read_config
from .semi.selftrain import SelftrainPlan
from .semi.selftrain import selftrain as run_rounds


def selftrain(
    teacher: str | Path,
    *,
    unlabeled: str,
    rounds: int = 1,
    output: str | Path = "runs/selftrain",
    student: str | None = None,
    options: dict[str, Any] | None = None,
    drop_path_rate: float = 0.2,
    resume: bool = False,
    device: str | None = None,
    **overrides: Any,
) -> list[dict]:
    """Noisy Student from the finished run ``teacher``: ``rounds`` students, each taught by the
    one before on the ``unlabeled`` images (a folder, or ``pool``); the table of rounds (also in
    ``output/rounds.json`` and ``rounds.md``). ``overrides`` are further ``TrainConfig`` fields
    for every student (``epochs``, ``unlabeled_limit``, ``image_size``...)."""
    from .api import train
    from .api_predict import evaluate

    if device is not None:
        overrides["device"] = device
    data = (read_config(Path(teacher)).get("requested") or {}).get("data")

    def score(run: str) -> dict[str, Any]:
        metrics = json.loads((Path(run) / "metrics.json").read_text())
        out: dict[str, Any] = {"val_acc": (metrics.get("val") or {}).get("accuracy")}
        if data and is_builtin(data):
            out["test_acc"] = evaluate(run, device=overrides.get("device", "auto"))["accuracy"]
        return out

    plan = SelftrainPlan(
        teacher=str(teacher), unlabeled=unlabeled, rounds=rounds, output=str(output), student=student, options=dict(options or {}),
        overrides=overrides, drop_path_rate=drop_path_rate,
    )
    return run_rounds(plan, train, score, resume=resume)
