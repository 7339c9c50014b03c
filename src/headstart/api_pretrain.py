"""``headstart pretrain``: a body trained by a pretext task on unlabeled images (seed 000).

Wiring only: the tasks are ``methods/pretext/`` (one file each, registered in ``PRETEXTS``), the
loop is the training loop every run uses (``engine.fit``: progress, checkpoints, exact resume,
``--time-budget``), the folder is ``body.py``'s run of kind ``body``.

The images: any folder (every image under it, labels and subfolders ignored) or a built-in set
(its training split, labels dropped). A few of them (``VAL_IMAGES``, at most 5 %) are held out to
validate the pretext task each epoch, so the body kept is the epoch that did the task best on
images it did not train on.

Where it starts: ImageNet weights (``--from imagenet``, the default where the architecture has
them installed) with the first half of the stages frozen (``rules.default_freeze_stages``: the
edges and textures that transfer anywhere stay; there are no labels here for the advisor to
measure where they stop), or random initialisation (``--from scratch``, every stage trains).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .backbones import create_backbone
from .body import save_body
from .console import console
from .data import ImageSet, load_unlabeled, resolve
from .data.notices import report_skipped
from .data.sources import is_builtin
from .data.tensors import images_tensor
from .engine import Batches
from .engine.budget import plan_epochs
from .engine.checkpoint import seed_everything
from .engine.prepare import Prepare, pick_device
from .errors import ConfigError
from .finetune import rules
from .finetune.recipe import cosine_schedule
from .methods import build_options
from .methods.base import Setup
from .methods.pretext import PRETEXTS
from .runfolder import check_same_request, open_for_training

VAL_IMAGES = 512
"""Images held out to validate the pretext task (at most 5 % of the folder): 512 give its
accuracy to about ±2 points, and cost one forward pass each per epoch."""


def _images(data: str, on_bad_image: str) -> ImageSet:
    if is_builtin(data):
        images = resolve(data, split="train", on_bad_image=on_bad_image)
        return ImageSet(images=images.images, labels=np.full(len(images), -1, dtype=np.int64), classes=[], name=f"{data} (train split, labels unused)")
    if not Path(data).is_dir():
        raise ConfigError(f"{data} is neither an image folder nor a built-in set (fashion-mnist, digits); give a folder of images")
    images = load_unlabeled(data, on_bad_image=on_bad_image)
    report_skipped(images)
    return images


def pretrain(
    data: str,
    *,
    method: str = "rotation",
    output: str | Path = "runs/body",
    backbone: str = "efficientnet_lite0",
    start: str = "imagenet",
    freeze_stages: int | None = None,
    image_size: int | None = None,
    epochs: int | None = None,
    batch_size: int = 64,
    lr: float | None = None,
    time_budget: float | None = None,
    method_options: dict[str, Any] | None = None,
    max_images: int | None = None,
    seed: int = 0,
    resume: bool = False,
    overwrite: bool = False,
    checkpoint_every: int = 0,
    device: str = "auto",
    progress: bool = True,
    on_bad_image: str = "skip",
) -> dict[str, Any]:
    """Train a body with the pretext task ``method`` on the images of ``data`` and write it to
    ``output`` as a run of kind ``body``. Returns its metrics (also in ``metrics.json``).

    ``epochs`` (default 10, or what ``time_budget`` minutes afford, measured), ``max_images``
    (a seeded subset of the images), ``lr`` (default 2e-3 for the task head and stages trained
    from scratch, a tenth of it for ImageNet stages: they are moved, not replaced)."""
    t_start = time.perf_counter()
    if method not in PRETEXTS:
        raise ConfigError(f"--method {method!r} is not a pretext task; choose one of: {', '.join(PRETEXTS.names())}")
    if start not in ("imagenet", "scratch"):
        raise ConfigError(f"--from {start!r}: give imagenet (the installed ImageNet weights) or scratch (random initialisation)")
    folder = open_for_training(output, resume=resume, overwrite=overwrite, checkpoint_every=checkpoint_every)
    cls = PRETEXTS.get(method)
    options = build_options(cls, method, method_options)
    images = _images(data, on_bad_image)
    dev = pick_device(device)
    seed_everything(seed)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = create_backbone(backbone, num_classes=1, weights="default" if start == "imagenet" else None)
    if start == "imagenet" and not model.pretrained:
        raise ConfigError(f"--from imagenet: no ImageNet weights are installed for {backbone}; give --from scratch, or --backbone "
                          "efficientnet_lite0")
    reasons: dict[str, str] = {}
    if freeze_stages is None:
        freeze_stages = rules.default_freeze_stages(num_stages=model.num_stages) if start == "imagenet" else 0
        reasons["freeze_stages"] = (f"the first {freeze_stages} of {model.num_stages} stages stay as ImageNet trained them (the edges "
                                    "and textures that transfer anywhere; no labels here to measure further)" if freeze_stages
                                    else "from scratch: every stage trains")
    if not 0 <= freeze_stages < model.num_stages:
        raise ConfigError(f"--freeze-stages {freeze_stages}: {backbone} has {model.num_stages} stages; freeze 0..{model.num_stages - 1}")
    model.freeze(freeze_stages)
    if image_size is None:
        image_size = rules.default_image_size(native_size=images.typical_size(), weights_size=model.preprocess.image_size, strategy="partial")
        reasons["image_size"] = f"{image_size} px: the size training on these images would use (`headstart train` picks it the same way)"
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    n_val = min(VAL_IMAGES, len(images) // 20)
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    if max_images is not None and max_images < len(train_idx):
        train_idx = np.sort(rng.choice(train_idx, max_images, replace=False))
    if len(train_idx) < batch_size:
        raise ConfigError(f"{data}: {len(train_idx)} images to train on, fewer than one batch (--batch-size {batch_size}); add images "
                          "or lower --batch-size")
    console.print(f"  [bold]pretrain[/bold] {method} on {len(train_idx)} images of {images.name} ({n_val} held out to validate the task), "
                  f"{backbone} from {start} at {image_size} px, {freeze_stages} stage(s) frozen")
    x_all = images_tensor(images, size=None if images.is_array else image_size, num_workers=2)
    x_train, x_val = x_all[torch.from_numpy(train_idx)], x_all[torch.from_numpy(val_idx)] if n_val else None
    task = cls(model, options, Setup(num_classes=0))
    task.trainable().to(dev)
    prepare = Prepare(model.preprocess, image_size, dev)
    base_lr = 2e-3 if lr is None else lr
    body_lr = base_lr * (0.1 if start == "imagenet" else 1.0)

    resumed = folder.resume_state
    if resumed is not None:
        check_same_request(folder.path, {"data": data, "method": method, "backbone": backbone, "from": start,
                                          "freeze_stages": freeze_stages, "image_size": image_size, "batch_size": batch_size,
                                          "max_images": max_images, "seed": seed})
        plan = dict(resumed["info"]["plan"])
        if plan.get("images_per_epoch"):
            train_idx = np.asarray(plan["train_indices"], dtype=np.int64)
            x_train = x_all[torch.from_numpy(train_idx)]
    else:
        plan = {"epochs": epochs or 10, "images_per_epoch": None}
        steps_per_epoch = len(x_train) // batch_size
        if time_budget is not None and epochs is None:
            n_epochs, per_epoch, why = plan_epochs(task, x_train, prepare=prepare, batch_size=batch_size, budget_s=time_budget * 60,
                                                     steps_per_epoch=steps_per_epoch, lr=base_lr)
            plan = {"epochs": n_epochs, "images_per_epoch": per_epoch}
            reasons["epochs"] = why
            if per_epoch is not None:
                keep = np.sort(np.random.default_rng(seed + 1).choice(len(train_idx), per_epoch, replace=False))
                train_idx = train_idx[keep]
                x_train = x_all[torch.from_numpy(train_idx)]
                plan["train_indices"] = train_idx.tolist()
        elif epochs is None:
            reasons["epochs"] = "10 passes (the default; --epochs or --time-budget MINUTES to change it)"
    # every batch full: a contrastive batch of 3 images, or a patch batch of 1, teaches nothing
    train_batches = Batches(x_train, torch.arange(len(x_train)), batch_size=batch_size, shuffle=True, seed=seed, drop_last=True)
    val_batches = None if x_val is None or not len(x_val) else Batches(x_val, torch.arange(len(x_val)), batch_size=batch_size)
    module = task.trainable()
    body_params = [p for p in module.body.parameters() if p.requires_grad]
    head_params = [p for p in module.head.parameters() if p.requires_grad]
    groups = [{"params": body_params, "lr": body_lr, "weight_decay": 0.01, "name": "body"},
              {"params": head_params, "lr": base_lr, "weight_decay": 0.01, "name": "head"}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=base_lr)
    total = plan["epochs"] * len(train_batches)
    schedule = cosine_schedule(total_steps=total, warmup_steps=min(len(train_batches), total // 10))
    config = folder.start_config({
        "requested": {"data": data, "method": method, "backbone": backbone, "from": start, "freeze_stages": freeze_stages,
                      "image_size": image_size, "epochs": epochs, "batch_size": batch_size, "lr": lr, "time_budget": time_budget,
                      "method_options": dict(method_options or {}), "max_images": max_images, "seed": seed},
        "resolved": {"epochs": plan["epochs"], "images": len(x_train), "held_out": int(n_val), "body_lr": body_lr, "head_lr": base_lr,
                     "options": {k: getattr(options, k) for k in options.__dataclass_fields__}},
        "reasons": reasons,
    })
    if resumed is None:
        folder.write_start(config, None)
    deadline = None if time_budget is None else t_start + time_budget * 60
    result = folder.fit(task, train_batches, val_batches, epochs=plan["epochs"], optimizer=optimizer, schedule=schedule, device=dev,
                        prepare=prepare, tag="pretrain", plan=plan, deadline=deadline, progress=progress)
    model.cpu()
    metrics = {
        "kind": "body", "method": method, "images": len(x_train), "held_out": int(n_val), "epochs": plan["epochs"],
        "best_epoch": result.best_epoch, "history": result.history, "interrupted": result.interrupted, "stopped_at": result.stopped_at,
        "seconds": {"train": result.seconds, "total": time.perf_counter() - t_start},
        "images_per_second": (result.history[-1]["epoch"] if result.history else 0) * len(x_train) / max(result.seconds, 1e-9),
        "reasons": reasons,
    }
    save_body(folder.path, model=model, image_size=image_size, pretext_head=task.head_module(),
              meta={"pretext": {"method": method, "options": config["resolved"]["options"]}, "started_from": start,
                    "frozen_stages": freeze_stages, "trained_on": images.name},
              config=config, metrics=metrics)
    if not result.interrupted:
        folder.finish()
    metrics["run_dir"] = str(folder.path)
    return metrics
