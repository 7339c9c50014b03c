"""Pretrained bodies: the backbone a pretext task trained (``headstart pretrain``), as a run of
kind ``body`` that ``train --backbone-from`` starts from and ``probe`` measures.

A body folder holds the backbone's stages only (``model.safetensors``: the ``stages.*`` tensors
of a :class:`~headstart.backbones.Backbone`, no classifier head), the pretext task's own head
apart (``pretext-head.safetensors``: a rotation classifier, a projection, a decoder; kept so the
task can be continued or inspected, never loaded into a classifier), and ``model.json`` with the
architecture, input size, preprocessing and the pretext task. ``weights_sha256`` in a run
started from it records exactly which body it was.

Bodies are named to ``probe`` (and to ``load_body``) as a body run folder, or as
``imagenet:ARCH`` (the installed ImageNet weights) or ``random:ARCH`` (random initialisation):
the baselines a pretext body is measured against.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .backbones import Backbone, Preprocess, create_backbone
from .errors import ConfigError, RunError
from .fileio import atomic_write
from .runfolder import RUN_KINDS, LoadedRun, write_json, write_yaml
from .version import __version__

BODY = "body"
HEAD_FILE = "pretext-head.safetensors"
PREFIX = "stages."
RANDOM_SEED = 0
"""``random:ARCH`` is built with this torch seed (the caller's random state left as it was), so
the random-init baseline is the same network in every comparison."""
FORMS = "a body folder (written by `headstart pretrain`), imagenet:ARCH (the installed ImageNet weights) or random:ARCH (random initialisation)"


def stage_state(model: Backbone) -> dict[str, torch.Tensor]:
    """The backbone's stage tensors (``stages.*``), on the CPU, contiguous: what a body keeps."""
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k.startswith(PREFIX)}


def save_body(run_dir: str | Path, *, model: Backbone, image_size: int, pretext_head: torch.nn.Module | None, meta: dict[str, Any],
              config: dict[str, Any], metrics: dict[str, Any]) -> Path:
    """Write a body run; ``model.json`` last, so its presence means the body is complete."""
    from .data.fingerprint import file_digest

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    marker = run_dir / "model.json"
    if marker.exists():
        marker.unlink()
    atomic_write(run_dir / "model.safetensors", lambda tmp: save_file(stage_state(model), tmp))
    if pretext_head is not None:
        head = {k: v.detach().cpu().contiguous() for k, v in pretext_head.state_dict().items()}
        if head:
            atomic_write(run_dir / HEAD_FILE, lambda tmp: save_file(head, tmp))
    write_yaml(run_dir / "config.yaml", config)
    write_json(run_dir / "metrics.json", metrics)
    write_json(marker, {
        "kind": BODY, "headstart_version": __version__, "backbone": model.name, "image_size": int(image_size),
        "preprocess": model.preprocess.to_dict(), "stages": model.stage_names, "num_features": model.num_features,
        "weights_sha256": file_digest(run_dir / "model.safetensors"), **meta,
    })
    return run_dir


def read_body_meta(run_dir: str | Path, *, flag: str = "--backbone-from") -> dict[str, Any]:
    """A body folder's ``model.json``, or a clear error naming ``flag`` and the fix."""
    run_dir = Path(run_dir)
    meta_path = run_dir / "model.json"
    if not meta_path.is_file() or not (run_dir / "model.safetensors").is_file():
        raise ConfigError(f"{flag} {run_dir} is not a finished body (no model.json or model.safetensors); "
                          f"make one with `headstart pretrain DIR --method rotation -o {run_dir}`")
    meta = json.loads(meta_path.read_text())
    if meta.get("kind") != BODY:
        raise ConfigError(f"{flag} {run_dir} is a run of kind {meta.get('kind', 'classifier')!r}, not a body; give a folder written by "
                          "`headstart pretrain` (to start from a classifier run's whole network use --init-from)")
    return meta


def load_body_into(model: Backbone, run_dir: str | Path, *, flag: str = "--backbone-from") -> dict[str, Any]:
    """``--backbone-from BODY``: the body's stage weights into ``model`` (built for this run,
    same architecture), exactly; the head stays this run's. Returns what the run records of it
    (folder, hash, pretext task)."""
    run_dir = Path(run_dir)
    meta = read_body_meta(run_dir, flag=flag)
    if meta["backbone"] != model.name:
        raise ConfigError(f"{flag} {run_dir} is a {meta['backbone']} body and this run's --backbone is {model.name}: give "
                          f"--backbone {meta['backbone']}, or pretrain a {model.name} body")
    state = load_file(str(run_dir / "model.safetensors"))
    own = {k for k in model.state_dict() if k.startswith(PREFIX)}
    if set(state) != own:
        raise RunError(f"{run_dir / 'model.safetensors'} does not hold the stages of a {model.name} "
                       f"({len(state)} tensors, the architecture has {len(own)}); the body folder is damaged: pretrain it again")
    try:
        model.load_state_dict(state, strict=False)  # the keys are the stages' (checked above); the head stays this run's
    except RuntimeError as exc:  # a tensor of another shape
        raise RunError(f"{run_dir / 'model.safetensors'} does not fit {model.name}: {exc}") from exc
    model.pretrained = True
    model.weights_source = f"body {run_dir} ({meta.get('pretext', {}).get('method', '?')}, sha256 {meta['weights_sha256'][:12]})"
    return {"body": str(run_dir.resolve()), "weights_sha256": meta["weights_sha256"], "pretext": meta.get("pretext"),
            "image_size": meta["image_size"]}


@dataclass
class Body:
    """A body to measure: its name in tables, the backbone (head unused), its input size."""

    name: str
    model: Backbone
    image_size: int | None  # None: the caller's default for the architecture
    meta: dict[str, Any]


def load_body(spec: str, *, device: torch.device | str = "cpu") -> Body:
    """A body by name: a body run folder, ``imagenet:ARCH`` or ``random:ARCH`` (see the
    module's docstring)."""
    kind, _, arch = spec.partition(":")
    if not Path(spec).exists() and not (kind in ("imagenet", "random") and arch):
        raise ConfigError(f"body {spec!r} is not an existing folder, imagenet:ARCH or random:ARCH; name {FORMS} (ARCH from `headstart models`)")
    if kind in ("imagenet", "random") and arch and not Path(spec).exists():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            model = create_backbone(arch, num_classes=1, weights="default" if kind == "imagenet" else None)
        if kind == "imagenet" and not model.pretrained:
            raise ConfigError(f"{spec}: no ImageNet weights are installed for {arch}; name a body folder, or random:{arch}")
        return Body(spec, model.eval().to(device), None, {"kind": kind, "backbone": arch})
    path = Path(spec)
    meta = read_body_meta(path, flag="body")
    model = create_backbone(meta["backbone"], num_classes=1, weights=None)
    load_body_into(model, path, flag="body")
    model.preprocess = Preprocess.from_dict(meta["preprocess"])
    return Body(path.name, model.eval().to(device), int(meta["image_size"]), meta)


@RUN_KINDS.register(BODY)
def _load_body_run(run_dir: Path, meta: dict[str, Any], device: torch.device | str) -> LoadedRun:
    """A body through the one run loader: the backbone (a 1-wide head nobody trained)."""
    body = load_body(str(run_dir), device=device)
    return LoadedRun(path=run_dir, model=body.model, meta=meta)
