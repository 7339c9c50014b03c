"""The augmentation API: a preview sheet of a policy, and the label-safety audit of a run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .augment import (
    MAX_DROP,
    BuiltPolicy,
    audit_families,
    build_policy,
    contact_sheet,
    flagged_steps,
    parse_invariances,
    run_audit,
    write_sheet,
)
from .augment.store import AUDIT_FILE, keep_audit
from .console import console
from .data import check_trainable, resolve
from .data.notices import report_skipped
from .data.sources import is_builtin
from .data.tensors import align_classes, images_tensor
from .errors import ConfigError
from .predictor import Predictor
from .runfolder import LoadedRun, read_config, read_splits, rebuild_split, write_json


def _run_policy(run: LoadedRun, size: int) -> BuiltPolicy | None:
    """The augmentation policy a run trained with, rebuilt from its config."""
    resolved = read_config(run.path).get("resolved") or {}
    if not resolved:
        return None
    return build_policy(
        resolved.get("augment") or "none", size, strength=float(resolved.get("augment_strength") or 1.0),
        invariances=parse_invariances(resolved.get("invariances"), run.classes), classes=run.classes,
    )


def augment_audit(
    run_dir: str | Path,
    data: str | None = None,
    *,
    per_class: int = 100,
    families: Sequence[str] | None = None,
    max_drop: float | None = None,
    device: str = "auto",
    seed: int = 0,
    on_bad_image: str = "skip",
) -> dict[str, Any]:
    """Apply each transform family at a few exact magnitudes to labeled images (default: the
    run's validation split, or the official test split of a built-in set) and report, per class,
    how the trained model's predictions change; written to ``<run>/augment-audit.json`` and kept
    where ``train`` on the same data finds it and warns about flagged transforms."""
    predictor = Predictor(run_dir, device=device)
    run = predictor.run
    chosen = list(families) if families else audit_families()
    unknown = sorted(set(chosen) - set(audit_families()))
    if unknown:
        raise ConfigError(f"--families: {unknown} cannot be audited; choose from {', '.join(audit_families())}")
    if data is None:
        trained_on = run.meta.get("trained_on")
        splits = read_splits(run.path)
        data = "test" if trained_on and is_builtin(trained_on) else ("val" if splits.get("val_indices") or splits.get("val_data") else None)
    imageset, name, caution = rebuild_split(run, data, on_bad_image)
    report_skipped(imageset)
    imageset = align_classes(imageset, predictor.classes, name)
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(imageset.labels == c))[:per_class] for c in range(len(predictor.classes))]
    imageset = imageset.subset(np.sort(np.concatenate(keep)))
    images = images_tensor(imageset, size=None if imageset.is_array else run.image_size, num_workers=2)
    console.print(
        f"[bold]augment audit[/bold] {run.path} on {name}: {len(imageset)} images, {len(chosen)} transform families"
        + (f" [yellow]({caution})[/yellow]" if caution else "")
    )
    t0 = time.perf_counter()
    result = run_audit(
        lambda x: predictor.proba_tensor(x).argmax(1), images, imageset.labels, list(predictor.classes),
        families=chosen, max_drop=MAX_DROP if max_drop is None else max_drop, log=lambda m: console.print(f"  {m}"),
    )
    result.update({"run": str(run.path), "data": name, "caution": caution, "seconds": time.perf_counter() - t0})
    policy = _run_policy(run, int(images.shape[-1]))
    if policy is not None:
        result["run_policy"] = policy.describe()
        result["run_policy_flagged"] = sorted(set(flagged_steps(policy.all_steps(), result, int(images.shape[-1]))))
    write_json(run.path / AUDIT_FILE, result)
    result["written_to"] = str(run.path / AUDIT_FILE)
    keep_audit(run.meta.get("trained_on") or "", {k: v for k, v in result.items() if k != "written_to"})
    return result


def augment_preview(
    data: str,
    output: str | Path,
    *,
    policy: Any = "standard",
    strength: float = 1.0,
    invariances: Any = None,
    rows: int = 8,
    copies: int = 6,
    image_size: int | None = None,
    seed: int = 0,
    on_bad_image: str = "skip",
) -> Path:
    """A contact sheet (PNG) of ``rows`` images of ``data`` (one per class first), each original
    beside ``copies`` draws of the policy, exactly as training would apply it."""
    imageset = resolve(data, split="train", on_bad_image=on_bad_image)
    report_skipped(imageset)
    check_trainable(imageset)
    rng = np.random.default_rng(seed)
    order = [rng.permutation(np.flatnonzero(imageset.labels == c)) for c in range(len(imageset.classes))]
    picks: list[int] = []
    depth = 0
    while len(picks) < rows and depth < max(len(o) for o in order):
        picks += [int(o[depth]) for o in order if depth < len(o)][: rows - len(picks)]
        depth += 1
    chosen = imageset.subset(np.array(picks))
    size = None if chosen.is_array else (image_size or 128)
    images = images_tensor(chosen, size=size, num_workers=1)
    built = build_policy(
        policy, int(images.shape[-1]), strength=strength, invariances=parse_invariances(invariances, list(imageset.classes)),
        classes=list(imageset.classes),
    )
    torch.manual_seed(seed)
    sheet = contact_sheet(
        images, [imageset.classes[i] for i in chosen.labels], built.augmenter, [int(i) for i in chosen.labels],
        copies=copies, title=f"{data}: {built.describe()}",
    )
    return write_sheet(sheet, output)
