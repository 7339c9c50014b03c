"""Noisy Student rounds (Xie et al., 2020): ``headstart selftrain RUN --unlabeled ... --rounds R``.

Round ``r`` trains a student in ``OUT/round-r``: the same data and recipe as the teacher run
(its requested configuration), ``--method pseudolabel`` with the previous round's run as
``--teacher`` — the teacher's soft class probabilities on every unlabeled image, computed
once, clean (no augmentation, eval mode) — and noise on the student: the strong view
(RandAugment) of each unlabeled image, dropout before the head and stochastic depth. The
student is the same architecture as the teacher or the one ``--student`` names (equal or
larger, in the paper), and becomes the teacher of the next round. Each round's folder records
its teacher (``config.yaml``: ``teacher``); ``OUT/rounds.json`` and ``rounds.md`` are the table
of rounds, written after every round, so a stopped driver keeps what it finished and
``--resume`` continues from the first unfinished round.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import TrainConfig
from ..console import console
from ..errors import ConfigError, RunError
from ..fileio import atomic_write
from ..runfolder import read_config

STUDENT_NOISE = {"view": "strong", "targets": "soft", "threshold": "0.3", "align": "true"}
"""The student's defaults: Noisy Student's noised input, soft targets and its confidence floor,
and the teacher's table balanced to the labeled class shares (``-O align``): on the route's six
tables at 10 labels per class (3 seeds, the teachers' mean and the graph) that made 0.5–1.5
points more pseudo-labels right (benchmarks/results/semi-graph.md)."""


@dataclass
class SelftrainPlan:
    teacher: str
    unlabeled: str
    rounds: int
    output: str
    student: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)  # further TrainConfig fields (epochs, unlabeled_limit, ...)
    drop_path_rate: float = 0.2


def round_config(plan: SelftrainPlan, r: int, teacher: str) -> TrainConfig:
    """The student configuration of round ``r`` (from 1), taught by the run ``teacher``."""
    saved = read_config(Path(plan.teacher))
    if not saved or "requested" not in saved:
        raise RunError(f"{plan.teacher} is not a finished headstart run folder (no config.yaml); train the first teacher with "
                       "`headstart train`")
    requested = dict(saved["requested"])
    if requested.get("method") not in (None, "auto", "supervised", "pseudolabel"):
        raise ConfigError(f"the teacher {plan.teacher} was trained with --method {requested['method']}; selftrain starts from a "
                          "supervised (or earlier selftrain) run")
    requested.update(
        output=str(Path(plan.output) / f"round-{r}"), unlabeled=plan.unlabeled, method="pseudolabel", teacher=str(teacher),
        method_options={**STUDENT_NOISE, **{k: str(v) for k, v in plan.options.items()}}, drop_path_rate=plan.drop_path_rate,
        resume=False, overwrite=False, search=False, time_budget=None, init_from=None,  # the teacher's own run limits stay its own
    )
    if plan.student:
        requested["backbone"] = plan.student
        requested["weights"] = "default"
    requested.update(plan.overrides)
    return TrainConfig.from_dict(requested)


def finished(run: Path) -> bool:
    """A run whose training ended (not interrupted): a round, or the route's teacher."""
    metrics = run / "metrics.json"
    return (run / "model.json").is_file() and metrics.is_file() and not json.loads(metrics.read_text()).get("interrupted")


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def selftrain(plan: SelftrainPlan, train: Callable[[TrainConfig], Any], score: Callable[[str], dict[str, Any]], *, resume: bool = False) -> list[dict]:
    """Run the rounds; ``train`` trains one configuration, ``score`` evaluates a finished run
    (test accuracy where the data has a test split). Returns the table of rounds (round 0 is
    the first teacher)."""
    if plan.rounds < 1:
        raise ConfigError("--rounds must be at least 1")
    out = Path(plan.output)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    table = out / "rounds.json"
    if resume and table.is_file():
        rows = json.loads(table.read_text())["rounds"]
    if not rows:
        rows.append({"round": 0, "run": str(plan.teacher), "teacher": None, **score(str(plan.teacher))})
    teacher = rows[-1]["run"]
    for r in range(len(rows), plan.rounds + 1):
        cfg = round_config(plan, r, teacher)
        run = Path(cfg.output)
        console.rule(f"selftrain round {r}/{plan.rounds}: teacher {teacher}")
        t0 = time.perf_counter()
        if resume and run.exists() and not finished(run):
            cfg = cfg.with_updates(resume=True)
        elif run.exists() and finished(run) and not resume:
            raise RunError(f"{run} already holds a finished round; give another -o, or --resume to continue the rounds")
        if not (resume and finished(run)):
            train(cfg)
        metrics = json.loads((run / "metrics.json").read_text())
        history = metrics.get("history") or [{}]
        last = history[-1]
        rows.append({
            "round": r, "run": str(run), "teacher": str(teacher), "backbone": cfg.backbone, "seconds": round(time.perf_counter() - t0, 1),
            "teacher_pseudo_acc": (metrics.get("teacher") or {}).get("accuracy"),
            "teacher_confidence": (metrics.get("teacher") or {}).get("mean_confidence"),
            "coverage": last.get("pool_coverage"), "mask": last.get("pool_mask"),
            **score(str(run)),
        })
        _write(out, plan, rows)
        teacher = str(run)
    _write(out, plan, rows)
    return rows


def _write(out: Path, plan: SelftrainPlan, rows: list[dict]) -> None:
    _write_text(out / "rounds.json", json.dumps({"teacher": plan.teacher, "unlabeled": plan.unlabeled, "rounds": rows}, indent=2))
    lines = [
        "| round | run | backbone | val acc | test acc | teacher's pseudo-label acc | pool used | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def f(v: Any, pct: bool = False) -> str:
        return "" if v is None else (f"{v:.1%}" if pct else f"{v:.4f}" if isinstance(v, float) else str(v))

    for row in rows:
        lines.append(
            f"| {row['round']} | {row['run']} | {row.get('backbone', '')} | {f(row.get('val_acc'))} | {f(row.get('test_acc'))} | "
            f"{f(row.get('teacher_pseudo_acc'), True)} | {f(row.get('coverage'), True)} | {f(row.get('seconds'))} |"
        )
    _write_text(out / "rounds.md", "\n".join(lines) + "\n")
