"""A new training method is one new file: written into a copy of the package (nothing else in
it changes), it is a `--method` choice, a row of `headstart list methods`, and it trains."""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import headstart

TOY = '''"""A toy method: the multi-class hinge loss (Crammer & Singer), as an example of a method file."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .base import Batch, TrainingMethod
from .registry import METHODS


@dataclass(frozen=True)
class ToyOptions:
    margin: float = field(default=1.0, metadata={"help": "how far the true class must lead the best other class"})


@METHODS.register("toy")
class Toy(TrainingMethod):
    """Multi-class hinge loss: the true class's logit must lead every other by a margin."""

    Options = ToyOptions

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        logits = self.net(batch.images).float()
        true = logits.gather(1, batch.labels[:, None])
        others = logits.masked_fill(F.one_hot(batch.labels, logits.shape[1]).bool(), float("-inf"))
        violation = (self.options.margin - true + others.max(1, keepdim=True).values).clamp_min(0)
        return {"loss": violation.mean(), "violated": (violation > 0).float().mean()}
'''


def _copy_package(tmp_path: Path) -> Path:
    src = Path(headstart.__file__).parent
    dst = tmp_path / "pkg" / "headstart"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    (dst / "methods" / "toy.py").write_text(TOY)
    return dst


def _same_tree_but_toy(a: Path, b: Path) -> None:
    """Every file of ``a`` is in ``b`` unchanged; ``b`` has only ``methods/toy.py`` more."""
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])

    def walk(c: filecmp.dircmp, rel: str) -> list[str]:
        out = [f"{rel}{n}" for n in c.left_only + c.right_only + c.diff_files + c.funny_files]
        for name, sub in c.subdirs.items():
            out += walk(sub, f"{rel}{name}/")
        return out

    assert walk(cmp, "") == ["methods/toy.py"]


def test_a_method_in_one_new_file_trains_from_the_command_line(tmp_path):
    pkg = _copy_package(tmp_path)
    _same_tree_but_toy(Path(headstart.__file__).parent, pkg)
    env = {**os.environ, "PYTHONPATH": str(pkg.parent), "HF_HUB_OFFLINE": "1", "HEADSTART_CACHE": str(tmp_path / "cache"), "COLUMNS": "250"}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "headstart", *args], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=600)

    listed = cli("list", "methods")
    assert listed.returncode == 0, listed.stderr
    text = listed.stdout + listed.stderr
    assert "toy" in text and "Multi-class hinge loss" in text and "margin" in text and "1.0" in text

    run = tmp_path / "run"
    done = cli("train", "digits", "--method", "toy", "-O", "margin=2", "--strategy", "linear", "--labels-per-class", "5",
               "--epochs", "3", "--image-size", "32", "-o", str(run), "--no-progress", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert Path(json.loads((run / "model.json").read_text())["backbone"])  # a finished run
    meta = json.loads((run / "model.json").read_text())
    assert meta["method"] == "toy"
    metrics = json.loads((run / "metrics.json").read_text())
    rows = metrics["history"]
    assert len(rows) == 3 and all("train_violated" in r for r in rows)  # its own scalar reached the history
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["requested"]["method"] == "toy" and cfg["requested"]["method_options"] == {"margin": "2"}

    # the package it ran from: the installed one, with the new file only
    where = subprocess.run([sys.executable, "-c", "import headstart; print(headstart.__file__)"], env=env, capture_output=True, text=True)
    assert Path(where.stdout.strip()).parent == pkg

    bad = cli("train", "digits", "--method", "toy", "-O", "margin=wide", "-o", str(tmp_path / "bad"), "--no-progress")
    assert bad.returncode != 0 and "wants a float for margin" in bad.stderr
