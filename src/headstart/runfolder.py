"""The run folder: the contract between training and every command that uses a model.

    runs/<name>/
      config.yaml        requested and resolved configuration, with the reason for each default
      model.safetensors  weights (loading never unpickles code)
      model.json         backbone, classes, preprocessing, strategy, head, headstart version
      metrics.json       final and per-epoch metrics
      splits.json        which images were labeled / held out (indices into the data)
      tb/                TensorBoard event files

Every file is written to a temporary name and renamed into place, and ``model.json`` is
written last: a folder without it is an unfinished run and is refused with that explanation.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from . import __version__
from .backbones import Backbone, Preprocess, create_backbone
from .config import dump_yaml
from .errors import RunError
from .fileio import atomic_write
from .finetune.knn import KNNHead


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2, default=_jsonable)))


def write_yaml(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: dump_yaml(tmp, data))


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def model_meta(model: Backbone, *, classes: list[str], image_size: int, strategy: str) -> dict[str, Any]:
    head: dict[str, Any] = {"type": "linear"}
    if isinstance(model.head, KNNHead):
        head = {"type": "knn", "k": model.head.k, "bank_size": int(model.head.bank.shape[0])}
    return {
        "headstart_version": __version__,
        "backbone": model.name,
        "classes": list(classes),
        "num_classes": len(classes),
        "image_size": int(image_size),
        "preprocess": model.preprocess.to_dict(),
        "strategy": strategy,
        "frozen_stages": model.frozen_stages,
        "stages": model.stage_names,
        "cam_layer": model.stage_names[model.cam_index],
        "num_features": model.num_features,
        "drop_rate": model.drop.p if hasattr(model.drop, "p") else 0.0,
        "head": head,
        "pretrained": model.pretrained,
        "weights_source": model.weights_source,
    }


RUN_PRODUCTS = (
    "model.json", "model.safetensors", "metrics.json", "splits.json", "advice.json", "augment-audit.json",
    "bias-audit.json", "report.html", "eval-*.json", "tb", "explain", "features",
)
"""What a run and the commands that read it write into its folder: a new run in the same folder
(``--overwrite``, or after an unfinished one) removes them first, so no number, picture, curve or
audit of the old model is read as the new one's (an old ``augment-audit.json`` would even choose
the new model's test-time views). Other files in the folder are the user's and stay."""


def clear_replaced_run(run_dir: Path) -> list[str]:
    """Remove :data:`RUN_PRODUCTS` from ``run_dir``; the names removed."""
    removed = []
    for pattern in RUN_PRODUCTS:
        for path in sorted(run_dir.glob(pattern)):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path.name)
    return removed


def save_run(
    run_dir: str | Path,
    *,
    model: Backbone,
    meta: dict[str, Any],
    config: dict[str, Any],
    metrics: dict[str, Any],
    splits: dict[str, Any] | None = None,
) -> Path:
    """Write a finished run; ``model.json`` last, so its presence means the run is complete."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    marker = run_dir / "model.json"
    if marker.exists():
        marker.unlink()  # an overwritten run is incomplete until the new weights are in place
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(run_dir / "model.safetensors", lambda tmp: save_file(state, tmp))
    write_yaml(run_dir / "config.yaml", config)
    write_json(run_dir / "metrics.json", metrics)
    if splits is not None:
        write_json(run_dir / "splits.json", splits)
    write_json(marker, meta)
    return run_dir


@dataclass
class LoadedRun:
    path: Path
    model: Backbone
    meta: dict[str, Any]

    @property
    def classes(self) -> list[str]:
        return self.meta["classes"]

    @property
    def image_size(self) -> int:
        return int(self.meta["image_size"])

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess.from_dict(self.meta["preprocess"])


def load_run(run_dir: str | Path, *, device: torch.device | str = "cpu") -> LoadedRun:
    """Rebuild the model of a run from its folder alone (no pretrained weights file needed)."""
    run_dir = Path(run_dir)
    meta_path, weights_path = run_dir / "model.json", run_dir / "model.safetensors"
    if not run_dir.is_dir():
        raise RunError(f"run folder {run_dir} does not exist; train one with `headstart train DATA -o {run_dir}`")
    if not meta_path.is_file() or not weights_path.is_file():
        raise RunError(
            f"{run_dir} is not a finished run (model.json or model.safetensors is missing); "
            "training may have been interrupted before the run was written — train again"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise RunError(f"{meta_path} is not valid JSON ({exc}); the run folder is damaged") from exc
    model = create_backbone(meta["backbone"], num_classes=meta["num_classes"], weights=None, drop_rate=meta.get("drop_rate", 0.0))
    model.preprocess = Preprocess.from_dict(meta["preprocess"])
    head = meta.get("head", {"type": "linear"})
    if head["type"] == "knn":
        model.head = KNNHead(
            torch.zeros(head["bank_size"], model.num_features),
            torch.zeros(head["bank_size"], dtype=torch.long),
            meta["num_classes"],
            head["k"],
        )
    state = load_file(str(weights_path))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise RunError(f"{weights_path} does not match the model described in {meta_path}: {exc}") from exc
    model.freeze(meta.get("frozen_stages", 0))
    model.pretrained = meta.get("pretrained", False)
    model.weights_source = f"run {run_dir}"
    model.eval().to(device)
    return LoadedRun(path=run_dir, model=model, meta=meta)
