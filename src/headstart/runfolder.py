"""The run folder: the contract between training and every command that uses a model.

    runs/<name>/
      config.yaml        requested and resolved configuration, with the reason for each default
      model.safetensors  weights (loading never unpickles code)
      model.json         kind (classifier; later ensemble, segmenter, body), backbone, classes,
                         preprocessing, strategy, head, headstart version
      metrics.json       final and per-epoch metrics
      splits.json        which images were labeled / held out (indices into the data)
      tb/                TensorBoard event files

Every file is written to a temporary name and renamed into place, and ``model.json`` is
written last: a folder without it is an unfinished run and is refused with that explanation.

This module is the folder's one API: ``open_for_training`` (the resume and overwrite rules),
``TrainingFolder.write_start`` / ``save``, the readers (``read_config``, ``read_splits``,
``read_advice``, ``read_audit``, ``rebuild_split``) and ``load_run``, which dispatches on the
run's ``kind`` (``RUN_KINDS``). Head types are registered (``HEADS``): a new head is one entry
that says how to describe it in ``model.json`` and how to rebuild it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .augment.store import AUDIT_FILE
from .backbones import Backbone, Preprocess, create_backbone
from .config import dump_yaml, load_yaml
from .data import ImageSet, resolve
from .data.sources import is_builtin
from .engine.checkpoint import Checkpointer
from .errors import DataError, HeadstartError, RunError
from .fileio import atomic_write
from .finetune.knn import KNNHead
from .registry import Registry
from .version import __version__

CLASSIFIER = "classifier"
ENSEMBLE = "ensemble"

CARD = "README.md"
"""The model card every finished run holds (``report/card.py``)."""


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


@dataclass(frozen=True)
class HeadType:
    """How a head is written into ``model.json`` and rebuilt from it (before its weights load).

    ``describe(head)`` gives the head's entry (``{"type": name, ...}``) or ``None`` when the head
    is not of this type; ``build(entry, model)`` returns an empty head of the right shape, or
    ``None`` to keep the one the backbone was created with (``num_classes`` from the run)."""

    describe: Callable[[nn.Module], dict[str, Any] | None]
    build: Callable[[dict[str, Any], Backbone, int], nn.Module | None]


HEADS: Registry[HeadType] = Registry("head type")
HEADS.register("knn")(
    HeadType(
        describe=lambda h: {"type": "knn", "k": h.k, "bank_size": int(h.bank.shape[0])} if isinstance(h, KNNHead) else None,
        build=lambda e, m, n: KNNHead(
            torch.zeros(e["bank_size"], m.num_features), torch.zeros(e["bank_size"], dtype=torch.long), n, e["k"]
        ),
    )
)
HEADS.register("linear")(HeadType(describe=lambda h: {"type": "linear"}, build=lambda e, m, n: None))  # the backbone's own head


def describe_head(head: nn.Module) -> dict[str, Any]:
    for name in HEADS:
        entry = HEADS.get(name).describe(head)
        if entry is not None:
            return entry
    raise RunError(f"no registered head type describes {type(head).__name__}")


def model_meta(model: Backbone, *, classes: list[str], image_size: int, strategy: str) -> dict[str, Any]:
    return {
        "kind": CLASSIFIER,
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
        "head": describe_head(model.head),
        "pretrained": model.pretrained,
        "weights_source": model.weights_source,
    }


RUN_PRODUCTS = (
    "model.json", "model.safetensors", "metrics.json", "splits.json", "advice.json", AUDIT_FILE, CARD,
    "bias-audit.json", "report.html", "eval-*.json", "tb", "explain", "features", "teacher_targets.safetensors",
    "teacher-tables",
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
    digest: bool = False,
) -> Path:
    """Write a finished run; ``model.json`` last, so its presence means the run is complete.
    With ``digest``, ``model.json`` records the weights' SHA-256 (``weights_sha256``)."""
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
    if digest:
        from .data.fingerprint import file_digest

        meta = {**meta, "weights_sha256": file_digest(run_dir / "model.safetensors")}
    write_json(marker, meta)
    write_card(run_dir)
    return run_dir


def write_card(run_dir: str | Path) -> Path | None:
    """(Re)write the run's model card, ``README.md``, from the files the folder holds now
    (``report/card.py``); ``None`` when the folder is not a finished run. A ``README.md`` that is
    not a card (no front matter) is left alone."""
    from .report.card import render

    run_dir = Path(run_dir)
    if not (run_dir / "model.json").is_file():
        return None
    target = run_dir / CARD
    if target.is_file() and not target.read_text(encoding="utf-8").startswith("---\n"):
        return None
    read = lambda p: json.loads(p.read_text()) if p.is_file() else None  # noqa: E731
    evals = {p.name: json.loads(p.read_text()) for p in sorted(run_dir.glob("eval*.json"))}
    exports = {p.name[: -len(".json")]: json.loads(p.read_text()) for p in sorted(run_dir.glob("*.onnx.json")) + sorted(run_dir.glob("*.pt2.json"))}
    text = render(read(run_dir / "model.json") or {}, read(run_dir / "metrics.json") or {}, read_config(run_dir), evals=evals,
                  bias=read(run_dir / "bias-audit.json"), audit=read(run_dir / AUDIT_FILE), exports=exports, run_name=str(run_dir))
    atomic_write(target, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return target


@dataclass
class LoadedRun:
    path: Path
    model: Backbone | nn.Module  # an ensemble's is an ``EnsembleModel`` (uint8 pixels in, log-probabilities out)
    meta: dict[str, Any]
    members: list["LoadedRun"] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.meta.get("kind", CLASSIFIER)

    @property
    def classes(self) -> list[str]:
        return self.meta["classes"]

    @property
    def image_size(self) -> int:
        return int(self.meta["image_size"])

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess.from_dict(self.meta["preprocess"])


RUN_KINDS: Registry[Callable[[Path, dict[str, Any], torch.device | str], LoadedRun]] = Registry("run kind")
"""``kind`` in ``model.json`` → the loader of that kind of run (classifier today; ensembles,
segmenters and pretrained bodies add theirs)."""


def load_run(run_dir: str | Path, *, device: torch.device | str = "cpu") -> LoadedRun:
    """Rebuild the model of a run from its folder alone (no pretrained weights file needed),
    with the loader its ``kind`` names (runs written before kinds existed are classifiers)."""
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
    kind = meta.get("kind", CLASSIFIER)
    if kind not in RUN_KINDS:
        import headstart.api_detect  # noqa: F401  (registers ``detector``; these import this module, so not at the top)
        import headstart.api_segment  # noqa: F401  (registers ``segmenter``)
        import headstart.body  # noqa: F401  (registers the ``body`` kind)
    if kind not in RUN_KINDS:
        raise RunError(
            f"{run_dir} is a run of kind {kind!r}, which this headstart cannot load (it knows {', '.join(RUN_KINDS.names())}); "
            "update headstart or use the version that wrote it"
        )
    return RUN_KINDS.get(kind)(run_dir, meta, device)


@RUN_KINDS.register(CLASSIFIER)
def _load_classifier(run_dir: Path, meta: dict[str, Any], device: torch.device | str) -> LoadedRun:
    weights_path = run_dir / "model.safetensors"
    model = create_backbone(meta["backbone"], num_classes=meta["num_classes"], weights=None, drop_rate=meta.get("drop_rate", 0.0))
    model.preprocess = Preprocess.from_dict(meta["preprocess"])
    entry = meta.get("head", {"type": "linear"})
    if entry["type"] not in HEADS:
        raise RunError(f"{run_dir / 'model.json'} names a head type {entry['type']!r} this headstart does not know")
    head = HEADS.get(entry["type"]).build(entry, model, meta["num_classes"])
    if head is not None:
        model.head = head
    state = load_file(str(weights_path))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise RunError(f"{weights_path} does not match the model described in {run_dir / 'model.json'}: {exc}") from exc
    model.freeze(meta.get("frozen_stages", 0))
    model.pretrained = meta.get("pretrained", False)
    model.weights_source = f"run {run_dir}"
    model.eval().to(device)
    return LoadedRun(path=run_dir, model=model, meta=meta)


@RUN_KINDS.register(ENSEMBLE)
def _load_ensemble(run_dir: Path, meta: dict[str, Any], device: torch.device | str) -> LoadedRun:
    """An ensemble (``headstart ensemble``): its members, each loaded as the run it is and
    checked to hold the weights the ensemble was built with, and the rule's parameters."""
    from .ensemble.model import EnsembleModel, MemberInput

    members = []
    for path in ensemble_members(run_dir, meta):
        sub = load_run(path, device=device)
        if sub.kind != CLASSIFIER:
            raise RunError(f"member {path} of the ensemble {run_dir} is a run of kind {sub.kind!r}; members are classifier runs")
        members.append(sub)
    params = {k: v.numpy() for k, v in load_file(str(run_dir / "model.safetensors")).items()}
    model = EnsembleModel([m.model for m in members], [MemberInput(m.preprocess, m.image_size) for m in members], meta["rule"], params)
    model.eval().to(device)
    return LoadedRun(path=run_dir, model=model, meta=meta, members=members)


def ensemble_members(run_dir: Path, meta: dict[str, Any]) -> list[Path]:
    """The member folders of an ensemble (recorded relative to it, so the two move together;
    else where they were), each checked to hold the weights the ensemble was built with."""
    from .data.fingerprint import file_digest

    paths = []
    for entry in meta["members"]:
        p = (run_dir / entry["path"]).resolve()
        if not (p / "model.safetensors").is_file() and (Path(entry.get("absolute", "")) / "model.safetensors").is_file():
            p = Path(entry["absolute"])
        if not (p / "model.safetensors").is_file():
            raise RunError(f"{run_dir} is an ensemble whose member {entry['path']} is missing; put the member back, or build the "
                           f"ensemble again with `headstart ensemble RUN... -o {run_dir} --overwrite`")
        if file_digest(p / "model.safetensors") != entry["weights_sha256"]:
            raise RunError(f"member {p} of the ensemble {run_dir} has changed since the ensemble was built (its weights differ); "
                           f"build it again with `headstart ensemble ... -o {run_dir} --overwrite`")
        paths.append(p)
    return paths


# -- readers ----------------------------------------------------------------------------------


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's ``config.yaml`` (requested, resolved, reasons), or ``{}`` when it has none."""
    path = Path(run_dir) / "config.yaml"
    return load_yaml(path) if path.is_file() else {}


def read_splits(run_dir: str | Path) -> dict[str, Any]:
    """The run's ``splits.json`` (which images were labeled, trained on, held out), or ``{}``."""
    path = Path(run_dir) / "splits.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def read_advice(run_dir: str | Path) -> dict[str, Any] | None:
    path = Path(run_dir) / "advice.json"
    return json.loads(path.read_text()) if path.is_file() else None


def read_audit(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's label-safety audit (``headstart augment audit``), if one was made."""
    path = Path(run_dir) / AUDIT_FILE
    return json.loads(path.read_text()) if path.is_file() else None


SPLIT_WORDS = ("test", "train", "val")


def rebuild_split(run: LoadedRun, data: str | None, on_bad_image: str) -> tuple[ImageSet, str, str | None]:
    """The labeled images ``eval`` scores, their name, and a caution when they are not unseen.

    ``data`` is a folder, CSV or built-in set; or one of ``test`` (the built-in's official test
    split: the default for built-in sets), ``train`` / ``val`` (the run's own training and
    validation images, rebuilt from ``splits.json``). Default for a folder: the folder.
    """
    trained_on = run.meta.get("trained_on")
    if data is None:
        data = "test" if trained_on and is_builtin(trained_on) else trained_on
    if data is None:
        raise DataError("give the data to evaluate on (a folder, a CSV or a built-in set name)")
    if data not in SPLIT_WORDS:
        caution = None
        if data == trained_on and not is_builtin(data):
            caution = "these are the training images (plus any validation split): accuracy here is optimistic"
        return resolve(data, split="test", on_bad_image=on_bad_image), data, caution
    if data == "test":
        if not (trained_on and is_builtin(trained_on)):
            raise DataError(f"'test' names the official test split of a built-in set; {run.path} was trained on {trained_on}: give a folder or CSV of test images")
        return resolve(trained_on, split="test", on_bad_image=on_bad_image), f"{trained_on} (test split)", None
    splits_path = run.path / "splits.json"
    if not splits_path.is_file():
        raise RunError(f"{splits_path} is missing, so the run's {data} split cannot be rebuilt")
    splits = json.loads(splits_path.read_text())
    if data == "val" and splits.get("val_data"):
        return resolve(splits["val_data"], split="test", on_bad_image=on_bad_image), splits["val_data"], None
    idx = np.asarray(splits[f"{data}_indices"], dtype=np.int64)
    if len(idx) == 0:
        raise DataError(f"{run.path} has no {data} split (it trained on every labeled image)")
    full = resolve(splits["data"], split="train", on_bad_image=on_bad_image)
    caution = "these images trained the model: accuracy here is optimistic" if data == "train" else None
    return full.subset(idx), f"{splits['data']} ({data} split)", caution



# -- training into a folder ---------------------------------------------------------------------


def refuse_finished(output: str | Path, overwrite: bool) -> None:
    if (Path(output) / "model.json").exists() and not overwrite:
        raise HeadstartError(f"{output} already holds a finished run; choose another --output or pass --overwrite to replace it")


@dataclass
class TrainingFolder:
    """A run folder opened for training: its checkpointer and, when resuming, the state to
    continue from."""

    path: Path
    checkpointer: Checkpointer
    resume_state: dict[str, Any] | None = None

    def start_config(self, fresh: dict[str, Any]) -> dict[str, Any]:
        """What ``config.yaml`` holds for this run: ``fresh`` for a new run; for a resumed one,
        the run as first configured, with the step it was resumed at appended."""
        if self.resume_state is None:
            return fresh
        config = load_yaml(self.path / "config.yaml")
        config.setdefault("resumed_at_steps", []).append(int(self.resume_state["step"]))
        return config

    def write_start(self, config: dict[str, Any], advice: dict[str, Any] | None) -> list[str]:
        """For a new run: clear what an earlier run in the folder left (its numbers, pictures,
        curves, audits), write ``config.yaml`` (and ``advice.json``) now, so a run killed before
        it finishes can still be resumed and explained, and drop a stale checkpoint. What was
        removed."""
        self.path.mkdir(parents=True, exist_ok=True)
        replaced = clear_replaced_run(self.path)
        write_yaml(self.path / "config.yaml", config)
        if advice is not None:
            write_json(self.path / "advice.json", advice)
        self.checkpointer.clear()  # a stale checkpoint of an earlier run must never be resumed into this one
        return replaced

    def fit(self, method: Any, train: Any, val: Any, *, epochs: int, optimizer: torch.optim.Optimizer, schedule: np.ndarray,
            device: torch.device, prepare: Callable[[torch.Tensor], torch.Tensor], tag: str, plan: dict[str, Any],
            deadline: float | None, progress: bool) -> Any:
        """One ``engine.fit`` into this folder: checkpoints here (resumed from ``resume_state``),
        TensorBoard in ``tb/``, ``plan`` kept in each checkpoint, ``deadline`` from the time budget."""
        from torch.utils.tensorboard import SummaryWriter

        from .engine import Context, fit

        writer = SummaryWriter(str(self.path / "tb"))
        try:
            ctx = Context(device=device, prepare=prepare, writer=writer, checkpoint=self.checkpointer, resume=self.resume_state,
                          show_progress=progress, tag=tag, phase_info={"plan": plan}, deadline=deadline)
            return fit(method, train, val, epochs=epochs, optimizer=optimizer, lr_multipliers=schedule, context=ctx)
        finally:
            writer.close()

    def save(self, **parts: Any) -> Path:
        """Write the finished run (``save_run``'s parts: model, meta, config, metrics, splits)."""
        return save_run(self.path, **parts)

    def finish(self) -> None:
        """The run is complete: a checkpoint would only invite a stale resume."""
        self.checkpointer.clear()


def open_for_training(output: str | Path, *, resume: bool, overwrite: bool, checkpoint_every: int = 0) -> TrainingFolder:
    """The folder ``output`` opened for a new run (refused when it holds a finished run, unless
    ``overwrite``) or to resume one (refused when it has no checkpoint)."""
    path = Path(output)
    folder = TrainingFolder(path, Checkpointer(path / "checkpoint", every_steps=checkpoint_every))
    if resume:
        folder.resume_state = folder.checkpointer.load()
        if folder.resume_state is None:
            raise RunError(
                f"nothing to resume in {path}: it has no checkpoint (a run that finished removes its "
                "checkpoint, and knn runs have none); train again instead"
            )
    else:
        refuse_finished(path, overwrite)
    return folder


def load_run_weights(model: Any, run_dir: str | Path, backbone: str) -> None:
    """``--init-from RUN``: the run's whole network, head included, into ``model`` (a backbone
    built for this run); the run's architecture and number of classes must be this run's."""
    from .errors import ConfigError

    run = Path(run_dir)
    meta_path = run / "model.json"
    if not meta_path.is_file():
        raise ConfigError(f"--init-from {run} is not a finished run folder (no model.json)")
    meta = json.loads(meta_path.read_text())
    if meta.get("backbone") != backbone:
        raise ConfigError(f"--init-from {run} is a {meta.get('backbone')} run; this run's --backbone is {backbone}")
    state = load_file(str(run / "model.safetensors"))
    if tuple(state["head.weight"].shape) != tuple(model.head.weight.shape):
        raise ConfigError(f"--init-from {run} has {state['head.weight'].shape[0]} classes, this data {model.head.weight.shape[0]}")
    model.load_state_dict(state)
    model.pretrained = True


def check_same_request(path: Path, now: dict[str, Any], what: str = "pretraining") -> None:
    """``--resume``: the interrupted run (``what``: pretraining, segmentation training)
    continues only with its own settings (a different task, size or seed would continue another
    run's state); a differing one is named with both values."""
    from .config import load_yaml
    from .errors import ConfigError

    was = (load_yaml(path / "config.yaml") or {}).get("requested", {})
    differ = [f"{k} {was.get(k)!r} (now {v!r})" for k, v in now.items() if k in was and was.get(k) != v]
    if differ:
        raise ConfigError(f"--resume {path}: the {what} was started with " + ", ".join(differ) + "; resume it with its own "
                          "settings, or start a new one in another --output")

