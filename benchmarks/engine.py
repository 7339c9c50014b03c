"""The engine's speed and memory claims, measured: feature cache, training throughput, scaling.

Rerun (on an idle machine; each writes results/engine-<command>.json, .md and .log):
    python benchmarks/engine.py cache        # linear probe: cached features vs recomputing them
    python benchmarks/engine.py throughput   # full fine-tune img/s: engine.fit, a hand loop, fastai
    python benchmarks/engine.py scale        # `headstart train` at 10k vs 60k images: time, memory
    python benchmarks/engine.py peers        # end to end on a folder of PNGs: headstart.train vs fastai
    python benchmarks/engine.py all
    python benchmarks/engine.py all --quick --out /tmp/engine-smoke   # a 2-minute smoke run

cache       EfficientNet-Lite0 frozen, a linear head on K labeled Fashion-MNIST images per class
            at headstart's defaults for `linear` (finetune/rules.py), trained twice in one
            process with the same seed: (a) headstart's path, features extracted once and the
            head trained on them by `engine.fit`; (b) the frozen body run again (eval mode, no
            grad) on every batch of every epoch. Goal: (a) >= 10x faster, same test accuracy.
throughput  Every layer trainable, 64 px (28 px uint8 upsampled by `Prepare`), batch 64,
            channels-last: images/s of (a) `engine.fit` with `Supervised`, (b) a minimal hand
            loop over the same `Batches` and `Prepare`, (c) fastai's `Learner.fit` (optional:
            `pip install -e '.[bench]'`). Rounds interleave a, b, c on fresh copies of one model.
            Goals: a/b >= 0.95, a/fastai >= 1.25.
scale       `python -m headstart train` in a fresh process per size, 1,000 vs 6,000 labels per
            class, one epoch of `partial`: wall time per image (goal: linear in the data) and
            peak resident memory (goal: 60k within 1.2x of 10k).
peers       End to end, as a user of each tool trains on a folder of image files: N Fashion-MNIST
            training images (200 per class) written once as PNGs into class folders; the same
            pretrained EfficientNet-Lite0 fully fine-tuned at 64 px, batch 64, lr 1e-3, E epochs by
            (a) `headstart.train` (the whole call: decode once, train, save the run) and (b)
            fastai's `ImageDataLoaders.from_folder` + `Learner.fit` (decodes every PNG every epoch
            in its workers, validates on 5 %). N = 2,000, E = 10 (about 1.5 to 2 minutes a run on
            2 cores); 2 interleaved rounds after an untimed warm-up step; wall time, img/s, and
            accuracy on official test images written as PNGs too. Goal: headstart >= 1.25x
            fastai's img/s.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TextIO

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

try:  # the same machine record as the other benchmarks, as a module or as a sibling script
    from benchmarks.strategies import machine_info
except ModuleNotFoundError:
    from strategies import machine_info

import headstart.api
import headstart.engine.phases
from headstart import TrainConfig
from headstart.backbones import create_backbone
from headstart.data import ImageSet, few_shot, preload, resolve
from headstart.engine import Batches, Context, Prepare, extract_features, fit
from headstart.engine.prepare import ToDevice
from headstart.finetune import rules
from headstart.finetune.recipe import phase_schedule, probe_phases
from headstart.methods import Setup, Supervised

RESULTS = Path(__file__).resolve().parent / "results"
DATA = "fashion-mnist"
BACKBONE = "efficientnet_lite0"
CPU = torch.device("cpu")
DEFAULTS = TrainConfig(data=DATA)  # weight decay, label smoothing and dropout of a default run

# Full-size settings, and the tiny ones of --quick (a smoke run of about two minutes).
FULL = {
    "cache_labels": 100, "cache_image_size": None, "test_images": 2000, "steps": 50, "warmup": 5, "rounds": 3,
    "scale_labels": [1000, 6000], "scale_image_size": 64,
    "peers_images": 2000, "peers_epochs": 10, "peers_rounds": 2,
}
QUICK = {
    "cache_labels": 10, "cache_image_size": 64, "test_images": 500, "steps": 4, "warmup": 2, "rounds": 2,
    "scale_labels": [20, 100], "scale_image_size": 32,
    "peers_images": 200, "peers_epochs": 1, "peers_rounds": 2,
}


class Log:
    """Prints a line and keeps it in a file (results/<name>.log)."""

    def __init__(self, file: TextIO) -> None:
        self.file = file

    def __call__(self, line: str) -> None:
        print(line, flush=True)
        self.file.write(line + "\n")
        self.file.flush()


def src_modified() -> bool:
    """Whether the code measured differs from the recorded commit (uncommitted changes under src/)."""
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "src"], cwd=RESULTS.parent.parent, capture_output=True, text=True, check=False
    )
    return bool(status.stdout.strip())


def tensors(imageset: ImageSet) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, 3, 28, 28) images and int64 labels, as `headstart train` holds them."""
    return preload(imageset, size=None), torch.from_numpy(imageset.labels.astype(np.int64))


def supervised(module: nn.Module) -> Supervised:
    """The method `headstart train` runs by default, with a default run's label smoothing."""
    return Supervised(module, setup=Setup(num_classes=10, label_smoothing=DEFAULTS.label_smoothing))


def quiet_cpu(prepare: Callable) -> Context:
    return Context(device=CPU, prepare=prepare, show_progress=False)


class RecomputedProbe(nn.Module):
    """The frozen body run on every batch, then the trainable head. The backbone must be frozen
    (`Backbone.freeze`), which keeps its stages in eval mode when `fit` calls ``train()``."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            features = self.backbone.forward_features(x)
        return self.backbone.forward_head(features)


# -- cache ------------------------------------------------------------------------------------


def run_cache(args, log: Log) -> tuple[list[dict], dict, str]:
    train, test = resolve(DATA, split="train"), resolve(DATA, split="test")
    x, y = tensors(train.subset(few_shot(train.labels, args.cache_labels, args.seed)[0]))
    test_x, test_y = tensors(test.subset(np.sort(np.random.default_rng(args.seed).choice(len(test), args.test_images, replace=False))))
    torch.manual_seed(args.seed)  # the new head's initial weights
    model = create_backbone(BACKBONE, num_classes=len(train.classes), drop_rate=DEFAULTS.drop_rate)
    model.to(memory_format=torch.channels_last)
    model.freeze(model.num_stages)
    n = len(x)
    batch_size = rules.default_batch_size(num_train=n)
    epochs = rules.default_epochs(num_train=n, batch_size=batch_size, strategy="linear")
    lr = rules.default_lr(strategy="linear", batch_size=batch_size)
    image_size = args.cache_image_size or rules.default_image_size(
        native_size=train.native_size, weights_size=model.preprocess.image_size, strategy="linear"
    )
    recompute_epochs = min(args.recompute_epochs or epochs, epochs)
    settings = {
        "train_images": n, "test_images": len(test_x), "image_size": image_size, "epochs": epochs, "batch_size": batch_size, "lr": lr,
    }
    log(f"cache: {json.dumps(settings)}")

    head_init = copy.deepcopy(model.head.state_dict())
    prepare = Prepare(model.preprocess, image_size, CPU)
    with torch.no_grad():  # first-call costs (thread pool, oneDNN kernels) would count against whichever path ran first
        model.eval().forward_features(prepare(x[:batch_size]))
    test_features, _ = extract_features(model, Batches(test_x, test_y, batch_size=256), prepare=prepare, device=CPU, show_progress=False)

    def train_head(net: nn.Module, batches: Batches, prep: Callable, run_epochs: int) -> float:
        """Same head init, dropout draws, schedule and batch order for both paths; returns seconds."""
        model.head.load_state_dict(head_init)
        torch.manual_seed(args.seed)
        t0 = time.perf_counter()
        method = supervised(net)
        # the linear probe's recipe, as `headstart train` runs it: its optimizer and schedule over `epochs`
        optimizer, multipliers = probe_phases(model, epochs=epochs, lr=lr, weight_decay=DEFAULTS.weight_decay)[0].begin(method, len(batches))
        fit(method, batches, None, epochs=run_epochs, optimizer=optimizer, lr_multipliers=multipliers, context=quiet_cpu(prep))
        return time.perf_counter() - t0

    @torch.no_grad()
    def test_predictions() -> torch.Tensor:
        return model.eval().head(test_features).argmax(1)

    # (a) headstart: one pass of the body (batches of 128, as api.train does), then the head on the vectors
    t0 = time.perf_counter()
    features, labels = extract_features(model, Batches(x, y, batch_size=128), prepare=prepare, device=CPU, show_progress=False)
    extract_s = time.perf_counter() - t0
    head_s = train_head(
        nn.Sequential(model.drop, model.head),
        Batches(features, labels, batch_size=batch_size, shuffle=True, seed=args.seed), ToDevice(CPU), epochs,
    )
    cached_pred = test_predictions()
    # (b) the body again on every batch of every epoch (same seed, so the same batch order)
    measured_s = train_head(RecomputedProbe(model), Batches(x, y, batch_size=batch_size, shuffle=True, seed=args.seed), prepare, recompute_epochs)
    extrapolated = recompute_epochs < epochs
    recompute_pred = None if extrapolated else test_predictions()

    def accuracy(pred: torch.Tensor | None) -> float | None:
        return None if pred is None else float((pred == test_y).float().mean())

    rows = [
        {
            "path": "cached features (headstart)", "seconds": extract_s + head_s, "extract_s": extract_s, "head_s": head_s,
            "epochs_measured": epochs, "extrapolated": False, "test_acc": accuracy(cached_pred), **settings,
        },
        {
            "path": "recompute features every epoch", "seconds": measured_s * epochs / recompute_epochs, "measured_s": measured_s,
            "epochs_measured": recompute_epochs, "extrapolated": extrapolated, "test_acc": accuracy(recompute_pred), **settings,
        },
    ]
    for r in rows:
        log(json.dumps(r))
    speedup = rows[1]["seconds"] / rows[0]["seconds"]
    summary = {
        "speedup": speedup,
        "goal_speedup": 10.0,
        "met": speedup >= 10.0,
        "extrapolated": extrapolated,
        "test_acc_difference": None if extrapolated else rows[0]["test_acc"] - rows[1]["test_acc"],
        "same_predictions": None if extrapolated else float((cached_pred == recompute_pred).float().mean()),
    }
    log(json.dumps(summary))
    return rows, summary, cache_markdown(rows, summary)


def cache_markdown(rows: list[dict], summary: dict) -> str:
    s = rows[0]
    lines = [
        f"# Linear probe: cached features vs recomputing them every epoch ({DATA})",
        "",
        (
            f"{BACKBONE} frozen, {s['train_images']} training images, {s['image_size']} px, {s['epochs']} epochs, "
            f"batch {s['batch_size']}, lr {s['lr']:g} (headstart's `linear` defaults); test accuracy on "
            f"{s['test_images']} official test images."
        ),
        "",
        "| path | wall time (s) | of which | epochs timed | test accuracy |",
        "|---|---|---|---|---|",
        f"| {s['path']} | {s['seconds']:.1f} | features {s['extract_s']:.1f} s + head {s['head_s']:.1f} s | {s['epochs_measured']} | {s['test_acc']:.4f} |",
    ]
    r = rows[1]
    acc = "— (not trained to the end)" if r["test_acc"] is None else f"{r['test_acc']:.4f}"
    timed = f"{r['epochs_measured']} of {r['epochs']}, **extrapolated**" if r["extrapolated"] else str(r["epochs_measured"])
    lines.append(f"| {r['path']} | {r['seconds']:.1f} | body + head every epoch | {timed} | {acc} |")
    same = "" if summary["same_predictions"] is None else f"; the two heads agree on {summary['same_predictions']:.2%} of test images"
    lines += ["", verdict(f"cache >= 10x faster than recomputing: {summary['speedup']:.1f}x{same}", summary["met"])]
    return "\n".join(lines) + "\n"


# -- throughput ---------------------------------------------------------------------------------


class TimedBatches(Batches):
    """`Batches` that time the steps after the first ``warmup``: from the request of batch
    ``warmup`` to the loop asking for one past the last. (A subclass, so `fit` finds every
    attribute it reads on its batches.)"""

    def __init__(self, *args, warmup: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.warmup = warmup
        self.images = 0
        self.start = self.end = 0.0

    def __iter__(self):
        it = super().__iter__()
        for i in itertools.count():
            if i == self.warmup:
                self.start = time.perf_counter()
            batch = next(it, None)
            if batch is None:
                break
            if i >= self.warmup:
                self.images += len(batch[1])
            yield batch
        self.end = time.perf_counter()

    @property
    def images_per_second(self) -> float:
        return self.images / (self.end - self.start)


class PrepareLayer(nn.Module):
    """`Prepare` as the model's first layer, for fastai, which feeds the model the raw uint8 batch."""

    def __init__(self, prepare: Prepare) -> None:
        super().__init__()
        self.prepare = prepare

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prepare(x)


def fastai_runner(prepare: Prepare, x: torch.Tensor, y: torch.Tensor, *, batch_size: int, warmup: int, lr: float) -> Callable[[nn.Module], float] | str:
    """A function training a model for one fastai epoch and returning its img/s, or why not."""
    try:
        from fastai.callback.core import Callback
        from fastai.callback.progress import ProgressCallback  # noqa: F401  (the default bar, so no_bar has one to remove)
        from fastai.data.core import DataLoaders
        from fastai.learner import Learner
        from fastai.losses import CrossEntropyLossFlat
        from fastai.optimizer import Adam
    except ImportError as exc:
        return f"fastai is not installed ({exc}); pip install -e '.[bench]' adds it"

    class StepClock(Callback):
        """Times training steps ``warmup``.. like `TimedBatches`: from the end of step
        ``warmup - 1`` (after every other callback) to the end of the training pass."""

        order, run_valid = 100, False

        def before_train(self) -> None:
            self.images, self.start = 0, time.perf_counter()

        def after_batch(self) -> None:
            if self.iter == warmup - 1:
                self.start = time.perf_counter()
            elif self.iter >= warmup:
                self.images += len(self.yb[0])

        def after_train(self) -> None:
            self.seconds = time.perf_counter() - self.start

    # one batch of validation: fastai validates after every epoch, outside the timed window anyway
    dsets = torch.utils.data.TensorDataset(x, y), torch.utils.data.TensorDataset(x[:batch_size], y[:batch_size])

    def run(model: nn.Module) -> float:
        clock = StepClock()
        dls = DataLoaders.from_dsets(*dsets, bs=batch_size, device=CPU)
        learn = Learner(
            dls, nn.Sequential(PrepareLayer(prepare), model), loss_func=CrossEntropyLossFlat(label_smoothing=DEFAULTS.label_smoothing),
            opt_func=Adam, wd=DEFAULTS.weight_decay, cbs=clock,
        )
        with learn.no_bar(), learn.no_logging():  # no_logging: the epoch's summary line, printed after the clock stops
            learn.fit(1, lr)
        return clock.images / clock.seconds

    return run


def run_throughput(args, log: Log) -> tuple[list[dict], dict, str]:
    batch_size, image_size, lr = 64, 64, 1e-3
    x, y = tensors(resolve(DATA, split="train").subset(np.arange((args.warmup + args.steps) * batch_size)))
    torch.manual_seed(args.seed)
    template = create_backbone(BACKBONE, num_classes=10, drop_rate=DEFAULTS.drop_rate)  # never trained: the shared initial weights
    template.to(memory_format=torch.channels_last)
    prepare = Prepare(template.preprocess, image_size, CPU)
    settings = {"image_size": image_size, "batch_size": batch_size, "steps_timed": args.steps, "warmup_steps": args.warmup}
    log(f"throughput: {json.dumps(settings)}")

    def batches() -> TimedBatches:
        return TimedBatches(x, y, batch_size=batch_size, shuffle=True, seed=args.seed, warmup=args.warmup)

    # (a) and (b) share one AdamW setup (a single group), so they differ only in the loop around the step
    def adamw(model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=DEFAULTS.weight_decay)

    def headstart_fit(model: nn.Module) -> float:
        timed = batches()
        fit(supervised(model), timed, None, epochs=1, optimizer=adamw(model), lr_multipliers=phase_schedule(1, len(timed)), context=quiet_cpu(prepare))
        return timed.images_per_second

    def hand_loop(model: nn.Module) -> float:
        timed, optimizer = batches(), adamw(model)
        model.train()
        for xb, yb in timed:
            xb = prepare(xb)
            loss = F.cross_entropy(model(xb), yb, label_smoothing=DEFAULTS.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return timed.images_per_second

    runners: dict[str, Callable[[nn.Module], float]] = {"headstart engine.fit": headstart_fit, "hand-written loop": hand_loop}
    fastai = fastai_runner(prepare, x, y, batch_size=batch_size, warmup=args.warmup, lr=lr)
    if isinstance(fastai, str):
        log(f"skipping the fastai row: {fastai}")
    else:
        runners["fastai Learner.fit"] = fastai
    rows = []
    for round_ in range(args.rounds):
        for name, runner in runners.items():
            torch.manual_seed(args.seed)
            rate = runner(copy.deepcopy(template))
            rows.append({"loop": name, "round": round_ + 1, "images_per_s": rate, **settings})
            log(json.dumps(rows[-1]))
    median = {name: statistics.median(r["images_per_s"] for r in rows if r["loop"] == name) for name in runners}
    vs_hand = median["headstart engine.fit"] / median["hand-written loop"]
    vs_fastai = median["headstart engine.fit"] / median["fastai Learner.fit"] if "fastai Learner.fit" in median else None
    summary = {
        "median_images_per_s": median,
        "headstart_vs_hand_loop": vs_hand,
        "goal_vs_hand_loop": 0.95,
        "met_vs_hand_loop": vs_hand >= 0.95,
        "headstart_vs_fastai": vs_fastai,
        "goal_vs_fastai": 1.25,
        "met_vs_fastai": None if vs_fastai is None else vs_fastai >= 1.25,
        "fastai_skipped": fastai if isinstance(fastai, str) else None,
    }
    log(json.dumps(summary))
    return rows, summary, throughput_markdown(rows, summary, settings, args.rounds)


def throughput_markdown(rows: list[dict], summary: dict, settings: dict, rounds: int) -> str:
    lines = [
        f"# Full fine-tune throughput, {BACKBONE} ({DATA})",
        "",
        (
            f"Every layer trainable; {settings['image_size']} px from 28 px uint8 via `Prepare`, batch {settings['batch_size']}, "
            f"channels-last, cross-entropy with label smoothing {DEFAULTS.label_smoothing}. Each run times "
            f"{settings['steps_timed']} steps after {settings['warmup_steps']} warm-up steps; {rounds} interleaved rounds, each "
            "on a fresh copy of the same initial model. headstart and the hand loop use torch AdamW; fastai its default `Adam` "
            "(decoupled weight decay), as a user would."
        ),
        "",
        "| loop | img/s per round | median img/s |",
        "|---|---|---|",
    ]
    for name, med in summary["median_images_per_s"].items():
        per_round = ", ".join(f"{r['images_per_s']:.1f}" for r in rows if r["loop"] == name)
        lines.append(f"| {name} | {per_round} | {med:.1f} |")
    lines += ["", verdict(f"headstart / hand loop >= 0.95: {summary['headstart_vs_hand_loop']:.3f}", summary["met_vs_hand_loop"])]
    if summary["headstart_vs_fastai"] is None:
        lines.append(f"- headstart / fastai >= 1.25: not measured — {summary['fastai_skipped']}")
    else:
        lines.append(verdict(f"headstart / fastai >= 1.25: {summary['headstart_vs_fastai']:.3f}", summary["met_vs_fastai"]))
    return "\n".join(lines) + "\n"


# -- scale --------------------------------------------------------------------------------------


# The child reports its own peak resident set (VmHWM) as it exits. getrusage and wait4 would
# not do: Linux carries a process's peak across fork and exec into the child's ru_maxrss, so
# every child of this benchmark (1-2 GB after the other subcommands) would report at least that.
PEAK_MARK = "peak-resident-kib"
CHILD = f"""
import atexit, runpy, sys
def peak():
    line = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print("{PEAK_MARK}", line.split()[1], file=sys.stderr)
atexit.register(peak)
sys.argv[0] = "headstart"
runpy.run_module("headstart", run_name="__main__")
"""


def train_in_child(labels_per_class: int, args, log: Log, tmp: str) -> dict:
    """One `python -m headstart train` in a fresh process: wall time, its own seconds, peak resident set."""
    output = f"{tmp}/run-{labels_per_class}"
    flags = [
        "train", DATA, "--labels-per-class", str(labels_per_class), "--strategy", args.scale_strategy, "--epochs", "1",
        "--image-size", str(args.scale_image_size), "--val-fraction", "0", "--output", output, "--no-progress", "--device", "cpu",
    ]
    log("$ python -m headstart " + " ".join(flags))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}  # the child's torch thread count, as set here
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, *flags], env=env, capture_output=True, text=True, check=False)
    wall_s = time.perf_counter() - t0
    peak_kib = None
    for line in (proc.stdout + proc.stderr).splitlines():
        if line.startswith(PEAK_MARK):
            peak_kib = int(line.split()[1])
        else:
            log("  | " + line)
    if proc.returncode != 0:
        raise SystemExit(f"headstart train failed with exit status {proc.returncode}")
    if peak_kib is None:
        raise SystemExit("the child did not report its peak memory (it reads /proc/self/status: Linux only)")
    metrics = json.loads(Path(output, "metrics.json").read_text())
    n = int(metrics["num_train"])
    return {
        "labels_per_class": labels_per_class, "images": n, "wall_s": wall_s, "train_s": metrics["seconds"],
        "train_ms_per_image": 1000 * metrics["seconds"] / n, "peak_rss_mib": peak_kib / 1024,
        "strategy": args.scale_strategy, "image_size": args.scale_image_size, "epochs": 1,
    }


def run_scale(args, log: Log) -> tuple[list[dict], dict, str]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in args.scale_labels:
            rows.append(train_in_child(k, args, log, tmp))
            log(json.dumps(rows[-1]))
    small, large = min(rows, key=lambda r: r["images"]), max(rows, key=lambda r: r["images"])
    size_ratio = large["images"] / small["images"]
    time_ratio = large["train_s"] / small["train_s"]
    memory_ratio = large["peak_rss_mib"] / small["peak_rss_mib"]
    summary = {
        "size_ratio": size_ratio,
        "train_time_ratio": time_ratio,
        "wall_time_ratio": large["wall_s"] / small["wall_s"],
        # linear, or better: fixed costs (loading the data set, building the model) do not grow
        "met_time_linear": time_ratio <= 1.1 * size_ratio,
        "peak_memory_ratio": memory_ratio,
        "goal_peak_memory_ratio": 1.2,
        "met_memory": memory_ratio <= 1.2,
    }
    log(json.dumps(summary))
    return rows, summary, scale_markdown(rows, summary)


def scale_markdown(rows: list[dict], summary: dict) -> str:
    s = rows[0]
    lines = [
        f"# `headstart train` at growing data: time and peak memory ({DATA})",
        "",
        (
            f"`--strategy {s['strategy']} --epochs 1 --image-size {s['image_size']} --val-fraction 0 --device cpu`, each size in "
            "a fresh process. Train time is the run's own `metrics.json` seconds (data loading to saved run); wall time adds "
            "interpreter start and imports. Peak memory is the child's maximum resident set (VmHWM)."
        ),
        "",
        "| labels/class | images | wall time (s) | train time (s) | train ms / image | peak RSS (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['labels_per_class']} | {r['images']} | {r['wall_s']:.1f} | {r['train_s']:.1f} | {r['train_ms_per_image']:.2f} | {r['peak_rss_mib']:.0f} |"
        )
    lines += [
        "",
        verdict(f"time linear in the data: {summary['size_ratio']:.1f}x the images took {summary['train_time_ratio']:.2f}x the train time", summary["met_time_linear"]),
        verdict(f"peak memory <= 1.2x: {summary['peak_memory_ratio']:.2f}x", summary["met_memory"]),
    ]
    return "\n".join(lines) + "\n"


# -- peers --------------------------------------------------------------------------------------


PEERS_LR, PEERS_BATCH, PEERS_SIZE = 1e-3, 64, 64


def folder_name(name: str) -> str:
    """A class name usable as a folder name ('T-shirt/top' becomes 'T-shirt_top')."""
    return "".join(c if c.isalnum() or c in "-_. " else "_" for c in name)


def write_png_folder(imageset: ImageSet, root: Path) -> list[tuple[Path, str]]:
    """Each image as ``root/<class>/<index>.png`` (class per folder); returns (file, class) pairs."""
    from PIL import Image

    names = [folder_name(c) for c in imageset.classes]
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
    files = []
    for i, (image, label) in enumerate(zip(imageset.images, imageset.labels)):
        path = root / names[int(label)] / f"{i:05d}.png"
        Image.fromarray(np.asarray(image)).save(path)
        files.append((path, names[int(label)]))
    return files


@contextlib.contextmanager
def engine_fit_seconds(record: list[float]):
    """Collects `FitResult.seconds` of every `engine.fit` that `headstart.train` runs (the training
    loop alone; the run's metrics.json keeps only the whole call's seconds). Timing only: the
    call and its result pass through unchanged."""
    original = headstart.engine.phases.fit

    def timed(*args, **kwargs):
        result = original(*args, **kwargs)
        record.append(result.seconds)
        return result

    headstart.engine.phases.fit = timed
    try:
        yield
    finally:
        headstart.engine.phases.fit = original


def headstart_peer(folder: Path, test_folder: Path, tmp: Path, args, round_: int) -> dict:
    """`headstart.train` on the PNG folder, timed as a whole; test accuracy by `headstart.evaluate`."""
    config = TrainConfig(
        data=str(folder), output=str(tmp / f"headstart-{round_}"), strategy="full", image_size=PEERS_SIZE,
        epochs=args.peers_epochs, batch_size=PEERS_BATCH, augment="none", val_fraction=0.0, lr=PEERS_LR, drop_rate=0.0,
        seed=args.seed, device="cpu", progress=False, feature_cache=False,
    )
    fit_seconds: list[float] = []
    with engine_fit_seconds(fit_seconds):
        t0 = time.perf_counter()
        result = headstart.api.train(config)
        wall_s = time.perf_counter() - t0
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    test = headstart.api.evaluate(result.run_dir, str(test_folder), device="cpu")
    loop_s = sum(fit_seconds)
    return {
        "tool": "headstart train", "round": round_, "wall_s": wall_s, "images_per_s": args.peers_images * args.peers_epochs / wall_s,
        "result_seconds": result.seconds, "train_loop_s": loop_s, "epoch_s": loop_s / args.peers_epochs,
        "outside_loop_s": wall_s - loop_s, "train_images": int(metrics["num_train"]), "validated_images": int(metrics["num_val"]),
        "final_train_acc": result.history[-1]["train_acc"] if result.history else None, "test_acc": float(test["accuracy"]),
    }


def fastai_peer_runner(folder: Path, test_files: list[tuple[Path, str]], args) -> Callable[[int], dict] | str:
    """A function running one fastai round (as its docs show a user), or why not."""
    try:
        from fastai.callback.core import Callback
        from fastai.vision.all import (
            CrossEntropyLossFlat,
            ImageDataLoaders,
            Learner,
            Normalize,
            Resize,
            accuracy,
        )
    except ImportError as exc:
        return f"fastai is not installed ({exc}); pip install -e '.[bench]' adds it"

    class EpochClock(Callback):
        """Seconds of each epoch's training and validation passes (reads the clock only)."""

        order = 100

        def before_fit(self) -> None:
            self.train_s, self.valid_s = [], []

        def before_train(self) -> None:
            self.t0 = time.perf_counter()

        def after_train(self) -> None:
            self.train_s.append(time.perf_counter() - self.t0)

        def before_validate(self) -> None:
            self.t0 = time.perf_counter()

        def after_validate(self) -> None:
            self.valid_s.append(time.perf_counter() - self.t0)

    def run(round_: int) -> dict:
        headstart.api.seed_everything(args.seed)  # as `headstart.train` seeds before it builds the model
        t0 = time.perf_counter()
        model = create_backbone(BACKBONE, num_classes=10)  # headstart's ImageNet weights; the new head from the same seed
        # fastai's vision_learner adds a timm model's own stats (its default_cfg); these are they
        mean, std = model.preprocess.mean, model.preprocess.std
        dls = ImageDataLoaders.from_folder(
            folder, valid_pct=0.05, seed=args.seed, item_tfms=Resize(PEERS_SIZE), batch_tfms=Normalize.from_stats(mean, std),
            bs=PEERS_BATCH,
        )
        learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=accuracy)
        setup_s = time.perf_counter() - t0
        clock = EpochClock()
        with learn.no_bar(), learn.no_logging():
            t0 = time.perf_counter()
            learn.fit(args.peers_epochs, PEERS_LR, cbs=clock)
            wall_s = time.perf_counter() - t0
            valid_acc = float(learn.recorder.values[-1][2])  # read before get_preds, which starts a new record
            test_dl = dls.test_dl([path for path, _ in test_files])
            preds, _ = learn.get_preds(dl=test_dl)
        predicted = [dls.vocab[i] for i in preds.argmax(1).tolist()]
        test_acc = float(np.mean([p == truth for p, (_, truth) in zip(predicted, test_files)]))
        return {
            "tool": "fastai Learner.fit", "round": round_, "wall_s": wall_s, "images_per_s": args.peers_images * args.peers_epochs / wall_s,
            "setup_s": setup_s, "end_to_end_s": setup_s + wall_s, "epoch_train_s": clock.train_s, "epoch_valid_s": clock.valid_s,
            "train_images": len(dls.train_ds), "validated_images": len(dls.valid_ds), "num_workers": dls.train.fake_l.num_workers,
            "final_valid_acc": valid_acc, "test_acc": test_acc,
        }

    return run


def warm_up() -> None:
    """One untimed training step of the model in each memory format, so first-call costs (thread
    pool, oneDNN kernels) count against neither tool's first round."""
    model = create_backbone(BACKBONE, num_classes=10)
    x, y = torch.randn(PEERS_BATCH, 3, PEERS_SIZE, PEERS_SIZE), torch.zeros(PEERS_BATCH, dtype=torch.long)
    for memory_format in (torch.channels_last, torch.contiguous_format):
        model.to(memory_format=memory_format)
        F.cross_entropy(model(x.contiguous(memory_format=memory_format)), y).backward()


def run_peers(args, log: Log) -> tuple[list[dict], dict, str]:
    train, test = resolve(DATA, split="train"), resolve(DATA, split="test")
    per_class = args.peers_images // len(train.classes)
    chosen = train.subset(few_shot(train.labels, per_class, args.seed)[0])
    args.peers_images = len(chosen)
    test_set = test.subset(np.sort(np.random.default_rng(args.seed).choice(len(test), args.test_images, replace=False)))
    settings = {
        "images": len(chosen), "per_class": per_class, "epochs": args.peers_epochs, "image_size": PEERS_SIZE,
        "batch_size": PEERS_BATCH, "lr": PEERS_LR, "test_images": len(test_set), "rounds": args.peers_rounds,
        "torch_threads": torch.get_num_threads(),
    }
    log(f"peers: {json.dumps(settings)}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        t0 = time.perf_counter()
        write_png_folder(chosen, tmp / "train")
        test_files = write_png_folder(test_set, tmp / "test")
        log(f"wrote {len(chosen)} + {len(test_set)} PNGs in {time.perf_counter() - t0:.1f} s (not timed)")
        runners: dict[str, Callable[[int], dict]] = {
            "headstart train": lambda r: headstart_peer(tmp / "train", tmp / "test", tmp, args, r)
        }
        fastai = fastai_peer_runner(tmp / "train", test_files, args)  # imports fastai now, before any timing
        if isinstance(fastai, str):
            log(f"skipping the fastai row: {fastai}")
        else:
            runners["fastai Learner.fit"] = fastai
        t0 = time.perf_counter()
        warm_up()
        log(f"warm-up step in both memory formats: {time.perf_counter() - t0:.1f} s (not timed)")
        rows = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            for round_ in range(1, args.peers_rounds + 1):
                for name, runner in runners.items():
                    rows.append({**runner(round_), **settings})
                    log(json.dumps(rows[-1]))
        for w in {f"{w.category.__name__}: {w.message}" for w in caught}:
            log(f"warning during the rounds: {w}")

    def median(name: str, key: str) -> float | None:
        values = [r[key] for r in rows if r["tool"] == name]
        return statistics.median(values) if values else None

    hs, fa = "headstart train", "fastai Learner.fit"
    ratio = None if fa not in runners else median(fa, "wall_s") / median(hs, "wall_s")
    summary = {
        "median_wall_s": {name: median(name, "wall_s") for name in runners},
        "median_images_per_s": {name: median(name, "images_per_s") for name in runners},
        "median_test_acc": {name: median(name, "test_acc") for name in runners},
        "headstart_vs_fastai": ratio,
        "goal_vs_fastai": 1.25,
        "met_vs_fastai": None if ratio is None else ratio >= 1.25,
        # fastai's folder scan and model build added to its side (headstart's call already holds both)
        "headstart_vs_fastai_end_to_end": None if fa not in runners else median(fa, "end_to_end_s") / median(hs, "wall_s"),
        "fastai_num_workers": next((r["num_workers"] for r in rows if r["tool"] == fa), None),
        "fastai_skipped": fastai if isinstance(fastai, str) else None,
    }
    log(json.dumps(summary))
    return rows, summary, peers_markdown(rows, summary, settings)


def peers_markdown(rows: list[dict], summary: dict, s: dict) -> str:
    hs = [r for r in rows if r["tool"] == "headstart train"]
    fa = [r for r in rows if r["tool"] == "fastai Learner.fit"]

    def per_round(rs: list[dict], key: str, fmt: str = ".1f") -> str:
        return ", ".join(format(r[key], fmt) for r in rs)

    lines = [
        f"# End to end on a folder of PNGs: headstart vs fastai ({DATA}, {BACKBONE})",
        "",
        (
            f"{s['images']} training images ({s['per_class']} per class, 28 px grayscale PNGs in class folders, written "
            f"once before timing), every layer trainable, {s['image_size']} px, batch {s['batch_size']}, lr {s['lr']:g}, "
            f"{s['epochs']} epoch(s), no augmentation, the same pretrained weights and head seed, contiguous inputs for fastai "
            f"and channels-last inside headstart; {s['rounds']} interleaved rounds in one process after one untimed "
            f"training step in each memory format, {s['torch_threads']} torch threads. Each tool as its user runs it:"
        ),
        "",
        (
            "- **headstart**: `headstart.train(TrainConfig(data=folder, strategy=\"full\", image_size=64, epochs=E, batch_size=64, "
            "augment=\"none\", val_fraction=0.0, lr=1e-3, drop_rate=0.0, device=\"cpu\", progress=False, feature_cache=False))`, "
            "timed as a whole: it builds the model, decodes every PNG once into memory, trains every image each epoch (no "
            "validation), and writes the run folder. Its defaults: AdamW, weight decay 0.05, label smoothing 0.1, the body at "
            "0.1x the head's rate, warm-up + cosine schedule."
        ),
        (
            "- **fastai**: `ImageDataLoaders.from_folder(folder, valid_pct=0.05, seed=0, item_tfms=Resize(64), "
            "batch_tfms=Normalize.from_stats(*model_stats), bs=64)` and `Learner(dls, model, loss_func=CrossEntropyLossFlat(), "
            "metrics=accuracy)`; timed: `learn.fit(E, 1e-3)` under `no_bar()` / `no_logging()`. Its DataLoader workers "
            f"({summary['fastai_num_workers']} here: fastai's default, all cores up to 16) decode every PNG every epoch; it trains "
            "on 95 % and validates on the other 5 % after every epoch (inside the timed call). Its defaults: Adam with decoupled "
            "weight decay 0.01, constant rate, no label smoothing. The normalisation stats are the model's own (mean = std = 0.5), "
            "what fastai's `vision_learner` adds for a timm model. Building the loaders and the model is outside its time "
            "(`setup`), inside headstart's."
        ),
        "",
        "images/s = all N images x E epochs / wall time, for both tools.",
        "",
        "| tool | wall time per round (s) | median wall (s) | median img/s | of which | test accuracy per round |",
        "|---|---|---|---|---|---|",
    ]
    if hs:
        lines.append(
            f"| headstart `train` | {per_round(hs, 'wall_s')} | {summary['median_wall_s']['headstart train']:.1f} | "
            f"{summary['median_images_per_s']['headstart train']:.1f} | training loop {per_round(hs, 'train_loop_s')} s "
            f"({hs[0]['train_images']} images/epoch); decoding, model, run folder {per_round(hs, 'outside_loop_s')} s | "
            f"{per_round(hs, 'test_acc', '.4f')} |"
        )
    if fa:
        train_s = ", ".join("+".join(f"{t:.1f}" for t in r["epoch_train_s"]) for r in fa)
        valid_s = ", ".join("+".join(f"{t:.1f}" for t in r["epoch_valid_s"]) for r in fa)
        lines.append(
            f"| fastai `Learner.fit` | {per_round(fa, 'wall_s')} | {summary['median_wall_s']['fastai Learner.fit']:.1f} | "
            f"{summary['median_images_per_s']['fastai Learner.fit']:.1f} | training passes {train_s} s ({fa[0]['train_images']} "
            f"images/epoch), validation {valid_s} s ({fa[0]['validated_images']} images); setup {per_round(fa, 'setup_s')} s, "
            f"not timed | {per_round(fa, 'test_acc', '.4f')} |"
        )
    lines.append("")
    lines.append(f"Test accuracy: {s['test_images']} official Fashion-MNIST test images, as PNGs, scored by `headstart.evaluate` "
                 "and by `learn.get_preds` on `dls.test_dl`.")
    lines.append("")
    if summary["headstart_vs_fastai"] is None:
        lines.append(f"- headstart / fastai >= 1.25: not measured — {summary['fastai_skipped']}")
    else:
        lines.append(verdict(f"headstart / fastai img/s >= 1.25: {summary['headstart_vs_fastai']:.2f}x", summary["met_vs_fastai"]))
        lines.append(
            f"- with fastai's setup counted too (as headstart's is): {summary['headstart_vs_fastai_end_to_end']:.2f}x"
        )
    return "\n".join(lines) + "\n"


# -- output and command line --------------------------------------------------------------------


def verdict(text: str, met: bool) -> str:
    return f"- {text} — **{'met' if met else 'NOT met'}**"


COMMANDS: dict[str, Callable] = {"cache": run_cache, "throughput": run_throughput, "scale": run_scale, "peers": run_peers}


def main(argv: Iterable[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=[*COMMANDS, "all"])
    ap.add_argument("--quick", action="store_true", help="tiny sizes for a smoke run (result files get a -quick suffix)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads, here and in scale's children")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(RESULTS))
    cache = ap.add_argument_group("cache")
    cache.add_argument("--cache-labels", type=int, help=f"labeled images per class (default {FULL['cache_labels']})")
    cache.add_argument("--cache-image-size", type=int, help="input side (default: headstart's rule for linear, 112 px)")
    cache.add_argument("--test-images", type=int, help=f"official test images scored, by cache and peers (default {FULL['test_images']})")
    cache.add_argument(
        "--recompute-epochs", type=int,
        help="time only this many recompute epochs and extrapolate to all (marked extrapolated; default: measure all)",
    )
    tp = ap.add_argument_group("throughput")
    tp.add_argument("--steps", type=int, help=f"timed steps per run (default {FULL['steps']})")
    tp.add_argument("--warmup", type=int, help=f"untimed steps before them (default {FULL['warmup']})")
    tp.add_argument("--rounds", type=int, help=f"interleaved rounds (default {FULL['rounds']})")
    sc = ap.add_argument_group("scale")
    sc.add_argument("--scale-labels", type=int, nargs="+", help=f"labels per class of each run (default {FULL['scale_labels']})")
    sc.add_argument("--scale-image-size", type=int, help=f"--image-size of the runs (default {FULL['scale_image_size']})")
    sc.add_argument("--scale-strategy", default="partial")
    pe = ap.add_argument_group("peers")
    pe.add_argument("--peers-images", type=int, help=f"training images written as PNGs, equal per class (default {FULL['peers_images']})")
    pe.add_argument("--peers-epochs", type=int, help=f"epochs of each tool (default {FULL['peers_epochs']})")
    pe.add_argument("--peers-rounds", type=int, help=f"interleaved rounds (default {FULL['peers_rounds']})")
    args = ap.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in COMMANDS if args.command == "all" else [args.command]:
        stem = f"engine-{name}{'-quick' if args.quick else ''}"
        info = {**machine_info(), "src_modified": src_modified()}
        with (out / f"{stem}.log").open("w") as file:
            log = Log(file)
            log(json.dumps(info))
            rows, summary, table = COMMANDS[name](args, log)
            write_results(out, stem, info, args, rows, summary, table, log)
    return 0


def write_results(out: Path, stem: str, info: dict, args, rows: list[dict], summary: dict, table: str, log: Log) -> None:
    """<stem>.json (every row, the machine, the arguments) and <stem>.md (the table and verdicts)."""
    command = f"python benchmarks/engine.py {' '.join(sys.argv[1:])}"
    header = (
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['torch_threads']} torch threads, GPU {info['gpu'] or 'none'}; "
        f"torch {info['torch']}; commit {info['commit']}{' + uncommitted changes under src/' if info['src_modified'] else ''}; "
        f"{info['date']}.\nCommand: `{command}`\n\n"
    )
    title, rest = table.split("\n", 1)
    (out / f"{stem}.md").write_text(f"{title}\n\n{header}{rest.lstrip()}")
    payload = {"machine": info, "command": command, "args": vars(args), "rows": rows, "summary": summary}
    (out / f"{stem}.json").write_text(json.dumps(payload, indent=2))
    log((out / f"{stem}.md").read_text())


if __name__ == "__main__":
    sys.exit(main())
