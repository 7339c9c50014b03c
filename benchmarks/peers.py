"""The `peers` suite: headstart's best strategy, fastai and a plain PyTorch loop on the same
backbone (EfficientNet-Lite0, the same offline ImageNet weights), the same labeled images and
the same wall-clock budget, in one process so the ratios are fair.

- headstart: ``headstart.train`` with the strategy that scored best at this many labels in the
  committed ``labels`` results (``partial`` when there are none), all its defaults. Its wall
  time is the budget for the other two.
- fastai, as its documentation shows a user: the images as PNG files, ``ImageDataLoaders.
  from_folder(valid_pct=0.05, item_tfms=Resize(S))`` with the model's normalisation,
  ``vision_learner`` on the pretrained body (fastai cuts it at the pooling layer and adds its own
  head) and ``fine_tune(E)`` — one frozen epoch, then E unfrozen with discriminative rates.
  E is what fits the budget, from a timed unfrozen epoch of a throwaway copy (not counted).
- plain loop: every layer trains, Adam at 1e-3, cross-entropy, batches of 64 resized to S on
  the fly, epoch after epoch while the budget lasts.

Each is scored on the official 10,000-image test split at the same input size S (headstart's
choice). ``python -m benchmarks.run peers [--labels 10 100]``.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.engine import write_png_folder
from benchmarks.run import Suite
from headstart import Predictor, TrainConfig, train
from headstart.backbones import create_backbone
from headstart.data import few_shot, preload, resolve
from headstart.engine import Batches, predict_logits

PEERS_SUITE = Suite(data="fashion-mnist", labels={10: [0], 100: [0]}, methods=[], budget="≤ 60 min")
SEED = 0


def best_strategy(k: int, results: Path) -> tuple[str, str]:
    path = results / "labels.json"
    if path.is_file():
        summary = [s for s in json.loads(path.read_text())["summary"] if s["labels_per_class"] == k and s["method"] in ("knn", "linear", "partial", "full")]
        if summary:
            best = max(summary, key=lambda s: s["mean"])
            return best["method"], f"best in labels.json at {k}/class ({best['mean']:.4f})"
    return "partial", "headstart's default (no labels results to choose from)"


def headstart_row(k: int, strategy: str, why: str, device: str, tmp: Path, test_set, pool_budget: float | None = None) -> dict:
    """headstart's row: the best strategy on the labels alone, or with ``pool_budget`` (minutes)
    the default route with the rest of the training split unlabeled (``--unlabeled pool
    --time-budget M``: teachers, then a Noisy Student)."""
    t0 = time.perf_counter()
    extra = {} if pool_budget is None else {"unlabeled": "pool", "time_budget": pool_budget}
    result = train(
        TrainConfig(
            data="fashion-mnist", labels_per_class=k, seed=SEED, strategy=strategy if pool_budget is None else "auto",
            output=str(tmp / f"headstart-{k}"), device=device, progress=False, feature_cache=False, **extra,
        )
    )
    wall = time.perf_counter() - t0
    if pool_budget is not None:
        strategy, why = "auto + pool", f"--unlabeled pool --time-budget {pool_budget:g}: teachers, then a Noisy Student"
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    r = result.resolved
    return {
        "method": f"headstart {strategy}",
        "labels_per_class": k,
        "seed": SEED,
        "test_acc": float((Predictor(result.run_dir, device=device).proba_imageset(test_set).argmax(1) == test_set.labels).mean()),
        "train_s": wall,
        "images_per_s": metrics["num_train"] * max(1, r["epochs"]) / wall,
        "image_size": r["image_size"],
        "epochs": r["epochs"],
        "note": f"{strategy}: {why}; {r['epochs']} epochs at {r['image_size']}px",
    }


def fastai_row(k: int, folder: Path, test_files: list[tuple[Path, str]], size: int, budget: float) -> dict:
    try:
        from fastai.vision.all import (
            CrossEntropyLossFlat,
            ImageDataLoaders,
            Normalize,
            Resize,
            accuracy,
            vision_learner,
        )
    except ImportError as exc:
        return {"method": "fastai fine_tune", "labels_per_class": k, "seed": SEED, "skipped": f"fastai is not installed ({exc}); pip install -e '.[bench]'"}
    pre = create_backbone("efficientnet_lite0", num_classes=10).preprocess

    def body(pretrained: bool = True) -> nn.Module:
        # the pretrained stages, then pooling: fastai cuts at the pooling layer and adds its head
        bb = create_backbone("efficientnet_lite0", num_classes=10)
        return nn.Sequential(*bb.stages, nn.AdaptiveAvgPool2d(1))

    def learner():
        torch.manual_seed(SEED)
        dls = ImageDataLoaders.from_folder(
            folder, valid_pct=0.05, seed=SEED, item_tfms=Resize(size), batch_tfms=Normalize.from_stats(pre.mean, pre.std), bs=64
        )
        return vision_learner(dls, body, loss_func=CrossEntropyLossFlat(), metrics=accuracy, normalize=False)

    probe = learner()
    probe.unfreeze()
    t0 = time.perf_counter()
    with probe.no_bar(), probe.no_logging():
        probe.fit(1, 1e-4)
    epoch_s = time.perf_counter() - t0  # one unfrozen epoch with its validation; a frozen one is cheaper
    epochs = max(1, int(budget / epoch_s) - 1)
    learn = learner()
    t0 = time.perf_counter()
    with learn.no_bar(), learn.no_logging():
        learn.fine_tune(epochs)
    wall = time.perf_counter() - t0
    n_train = len(learn.dls.train_ds)
    test_dl = learn.dls.test_dl([p for p, _ in test_files])
    with learn.no_bar():
        probs, _ = learn.get_preds(dl=test_dl)
    vocab = list(learn.dls.vocab)
    truth = np.array([vocab.index(c) for _, c in test_files])
    return {
        "method": "fastai fine_tune",
        "labels_per_class": k,
        "seed": SEED,
        "test_acc": float((probs.argmax(1).numpy() == truth).mean()),
        "train_s": wall,
        "images_per_s": n_train * (epochs + 1) / wall,
        "image_size": size,
        "epochs": epochs + 1,
        "note": f"1 frozen + {epochs} unfrozen epochs fit the budget (one unfrozen epoch took {epoch_s:.1f} s); trains on 95 %",
    }


def plain_loop_row(k: int, x: torch.Tensor, y: torch.Tensor, test: tuple[torch.Tensor, torch.Tensor], size: int, budget: float, device: str) -> dict:
    torch.manual_seed(SEED)
    model = create_backbone("efficientnet_lite0", num_classes=10).to(device)
    pre = model.preprocess
    mean = torch.tensor(pre.mean, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(pre.std, device=device).view(1, 3, 1, 1) * 255

    def prepare(batch: torch.Tensor) -> torch.Tensor:
        batch = F.interpolate(batch.to(device).float(), size=(size, size), mode="bilinear", align_corners=False)
        return (batch - mean) / std

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(SEED)
    epochs = 0
    t0 = time.perf_counter()
    epoch_s = 0.0
    while time.perf_counter() - t0 + epoch_s <= budget or epochs == 0:
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x), 64):
            idx = order[i : i + 64]
            loss = F.cross_entropy(model(prepare(x[idx])), y[idx].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
        epochs += 1
        epoch_s = time.perf_counter() - start
    wall = time.perf_counter() - t0
    logits, labels = predict_logits(model, Batches(*test, batch_size=256), prepare=prepare, device=torch.device(device))
    return {
        "method": "plain PyTorch loop",
        "labels_per_class": k,
        "seed": SEED,
        "test_acc": float((logits.argmax(1) == labels).float().mean()),
        "train_s": wall,
        "images_per_s": len(x) * epochs / wall,
        "image_size": size,
        "epochs": epochs,
        "note": f"{epochs} epochs (all layers, Adam 1e-3, no augmentation) while the budget lasted",
    }


def run_peers(labels: list[int], *, device: str, results: Path, log: Callable[[dict], None], test_limit: int | None = None,
              pool_budget: float | None = None) -> list[dict]:
    """Rows for each K in ``labels``; ``test_limit`` scores on the first N test images only
    (for checking the harness, never for quoted results); ``pool_budget``: headstart's row is
    the route with the unlabeled pool and that --time-budget, and its wall time the others'."""
    train_set, test_set = resolve("fashion-mnist", split="train"), resolve("fashion-mnist", split="test")
    if test_limit:
        test_set = test_set.subset(np.arange(test_limit))
    test = (preload(test_set, None), torch.from_numpy(test_set.labels.astype(np.int64)))
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        test_files = write_png_folder(test_set, tmp / "test")
        for k in labels:
            idx, _ = few_shot(train_set.labels, k, SEED)  # the images headstart's --labels-per-class K --seed 0 takes
            subset = train_set.subset(idx)
            write_png_folder(subset, tmp / f"train-{k}")
            strategy, why = best_strategy(k, results)
            rows.append(headstart_row(k, strategy, why, device, tmp, test_set, pool_budget))
            log(rows[-1])
            budget, size = rows[-1]["train_s"], rows[-1]["image_size"]
            rows.append(fastai_row(k, tmp / f"train-{k}", test_files, size, budget))
            log(rows[-1])
            x, y = preload(subset, None), torch.from_numpy(subset.labels.astype(np.int64))
            rows.append(plain_loop_row(k, x, y, test, size, budget, device))
            log(rows[-1])
            for r in rows[-3:]:
                r["budget_s"] = budget
    for r in rows:
        if "skipped" in r:
            print(f"skipped {r['method']} at {r['labels_per_class']}/class: {r['skipped']}")
    return [r for r in rows if "skipped" not in r]
