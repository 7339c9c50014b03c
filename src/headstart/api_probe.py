"""``probe``: how good a body's frozen features are, judged the way the field judges them.

A pretext task is only worth its training time if the body it leaves behind helps the labeled
task. The field's measure of that is a probe on *frozen* features: a linear classifier (logistic
regression on standardised features) and the weighted kNN of Wu et al. 2018 (used by DINO), both
trained on a few labeled images per class and scored on a test set. Several bodies are measured
together — a pretext body, ImageNet weights (``imagenet:ARCH``), random initialisation
(``random:ARCH``) — on exactly the same labeled draws, seeds, test images and input size, so
the comparison is honest: the only thing that differs between two rows is the body.

Features are the globally average-pooled output of a stage (the last one by default, or every
stage: early stages of a poorly trained body are sometimes better than its last). Each image is
run through a body once, stage by stage, pooling the stages asked for on the way.

Wiring only: bodies come from ``body.load_body``, images from the data layer, the labeled draws
from ``data.splits.few_shot``, pixels become input through ``engine.Prepare``.
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from .backbones import Backbone
from .body import FORMS, RANDOM_SEED, Body, load_body
from .console import console
from .data import ImageSet, resolve
from .data._progress import default_workers
from .data.sources import is_builtin
from .data.splits import few_shot
from .data.tensors import align_classes, images_tensor
from .engine.loop import autocast_for
from .engine.prepare import Prepare, pick_device
from .engine.progress import EpochProgress
from .errors import ConfigError
from .fileio import atomic_write
from .finetune import rules
from .runfolder import write_json

LINEAR_C = 1.0
"""Inverse L2 strength of the linear probe: scikit-learn's default, the same for every body, K
and stage (tuning it per body on the test set would flatter the body tuned most)."""

LINEAR_MAX_ITER = 5000
"""L-BFGS iterations allowed to the linear probe; standardised features converge in far fewer,
and a fit that does not is flagged in its row (``linear_converged``)."""



# ---------------------------------------------------------------------------------------------
# The two probes


def knn_predict(
    train_feats: torch.Tensor | np.ndarray,
    train_labels: torch.Tensor | np.ndarray,
    test_feats: torch.Tensor | np.ndarray,
    *,
    k: int,
    temperature: float,
    num_classes: int | None = None,
    chunk: int = 1024,
) -> np.ndarray:
    """Weighted kNN (Wu et al. 2018; DINO's evaluation): the predicted class of each test feature.

    Features are L2-normalised; the ``min(k, n_train)`` labeled features of highest cosine
    similarity ``s`` each vote for their class with weight ``exp(s / temperature)``; the class
    with the largest sum wins. Computed in float64; the weights are taken relative to each test
    image's best similarity (``exp((s - s_max) / T)``), which leaves the vote unchanged and
    cannot overflow at small temperatures.

    Ties: neighbours of equal similarity are ranked by their position in ``train_feats`` (a
    stable sort), and equal class sums go to the lowest class number.
    """
    if k < 1:
        raise ConfigError(f"kNN needs k of at least 1, got {k}")
    if not temperature > 0:
        raise ConfigError(f"kNN temperature must be above 0, got {temperature}")
    bank = _unit_rows(train_feats)
    labels = np.asarray(train_labels, dtype=np.int64).reshape(-1)
    queries = _unit_rows(test_feats)
    classes = int(num_classes) if num_classes is not None else int(labels.max()) + 1
    k = min(int(k), len(bank))
    out = np.zeros(len(queries), dtype=np.int64)
    for lo in range(0, len(queries), chunk):
        sims = queries[lo:lo + chunk] @ bank.T
        idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        top = np.take_along_axis(sims, idx, axis=1)
        weights = np.exp((top - top[:, :1]) / temperature)
        votes = np.zeros((len(top), classes))
        rows = np.arange(len(top))
        for j in range(k):  # one neighbour rank at a time: no row repeats within a rank
            votes[rows, labels[idx[:, j]]] += weights[:, j]
        out[lo:lo + chunk] = votes.argmax(1)
    return out


def _unit_rows(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, in float64 (an all-zero row stays zero)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def fit_linear(train_feats: np.ndarray, train_labels: np.ndarray, *, C: float = LINEAR_C, max_iter: int = LINEAR_MAX_ITER) -> Pipeline:
    """The linear probe: features standardised by the labeled draw's own mean and spread, then
    L2-regularised multinomial logistic regression (L-BFGS). Returns the fitted pipeline
    (``.predict``); ``converged(pipe)`` says whether L-BFGS finished within ``max_iter``."""
    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    # one thread: a few-shot draw is far too small to share, and sharing it costs more (5x
    # slower measured on two busy cores, 1,000 images × 1,280 features)
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore", ConvergenceWarning)  # recorded per row instead
        pipe.fit(np.asarray(train_feats, dtype=np.float64), np.asarray(train_labels))
    return pipe


def converged(pipe: Pipeline) -> bool:
    clf = pipe[-1]
    return bool(np.max(clf.n_iter_) < clf.max_iter)


# ---------------------------------------------------------------------------------------------
# Features


def resolve_stages(model: Backbone, stages: str | Sequence[str], *, body: str = "") -> list[int]:
    """Indices of the stages to probe: ``"last"``, ``"all"``, one name, comma-separated names or
    a list of names (``model.stage_names``); returned in the network's order."""
    names = model.stage_names
    if isinstance(stages, str):
        if stages == "last":
            return [len(names) - 1]
        if stages == "all":
            return list(range(len(names)))
        stages = [s.strip() for s in stages.split(",") if s.strip()]
    wanted = list(stages)
    unknown = [s for s in wanted if s not in names]
    if unknown or not wanted:
        of = f" of {body}" if body else ""
        raise ConfigError(f"unknown stage(s) {', '.join(map(repr, unknown)) or '(none given)'}{of} ({model.name}); "
                          f"give last, all, or names from: {', '.join(names)}")
    return sorted({names.index(s) for s in wanted})


@torch.inference_mode()
def stage_features(
    model: Backbone,
    images: torch.Tensor,
    *,
    stages: Sequence[int],
    prepare: Prepare,
    device: torch.device,
    batch_size: int = 128,
    bar: EpochProgress | None = None,
) -> dict[int, torch.Tensor]:
    """Pooled output (float32, CPU) of each stage in ``stages`` for every image of ``images``
    (uint8, N×3×H×W): one pass per batch through the stages up to the deepest one asked for,
    ``Backbone.pool`` applied to each stage asked for on the way. The model is put in eval mode."""
    model.eval()
    wanted = sorted(set(int(s) for s in stages))
    parts: dict[int, list[torch.Tensor]] = {s: [] for s in wanted}
    with autocast_for(device):
        for lo in range(0, len(images), batch_size):
            x = prepare(images[lo:lo + batch_size])
            for i in range(wanted[-1] + 1):
                x = model.forward_stages(x, i, i + 1)
                if i in parts:
                    parts[i].append(model.pool(x).float().cpu())
            if bar is not None:
                bar.advance()
    return {s: torch.cat(p) if p else torch.zeros(0, 0) for s, p in parts.items()}


# ---------------------------------------------------------------------------------------------
# Bodies and data


def _unique_names(bodies: list[Body]) -> list[str]:
    """Table names: a body's own, with ``#2``, ``#3`` added where two share one."""
    seen: dict[str, int] = {}
    out = []
    for b in bodies:
        seen[b.name] = seen.get(b.name, 0) + 1
        out.append(b.name if seen[b.name] == 1 else f"{b.name}#{seen[b.name]}")
    return out


def _body_record(name: str, spec: str, body: Body, stage_idx: list[int]) -> dict[str, Any]:
    model, meta = body.model, body.meta
    rec: dict[str, Any] = {
        "name": name, "spec": spec, "kind": meta.get("kind", "body"), "backbone": model.name,
        "weights": model.weights_source, "image_size": body.image_size, "preprocess": model.preprocess.to_dict(),
        "stages": [model.stage_names[i] for i in stage_idx], "num_features": model.num_features,
    }
    if meta.get("kind") == "random":
        rec["seed"] = RANDOM_SEED
    for key in ("weights_sha256", "pretext"):
        if meta.get(key) is not None:
            rec[key] = meta[key]
    return rec


def _test_set(data: str, test: str | None, classes: list[str]) -> ImageSet:
    if test is None and not is_builtin(data):
        raise ConfigError(f"{data} is a folder or CSV file, which has no test split of its own: give the images to score on with "
                          "--test DIR (test=...), a folder with the same class subfolders")
    source = test or data
    return align_classes(resolve(source, split="test"), classes, source)


# ---------------------------------------------------------------------------------------------
# The command


def probe(
    bodies: Sequence[str],
    data: str,
    *,
    labels_per_class: Sequence[int] = (1, 10, 100),
    seeds: Sequence[int] = (0,),
    stages: str | Sequence[str] = "last",
    test: str | None = None,
    image_size: int | None = None,
    knn_k: int = 20,
    knn_temperature: float = 0.07,
    output: str | Path | None = None,
    device: str = "auto",
    batch_size: int = 128,
    show_progress: bool = True,
) -> dict:
    """Linear probe and weighted kNN on the frozen features of each body in ``bodies``.

    Args:
        bodies: each :data:`FORMS`; all are measured on the same labeled images, seeds,
            test images and input size.
        data: the labeled images (a built-in set's train split, a folder or a CSV file); the
            labeled draws are ``few_shot(labels, K, seed)`` for each K and seed.
        labels_per_class: the K values.
        seeds: the seeds of the draws (the mean and sample sd over them are reported).
        stages: ``"last"``, ``"all"`` or stage names (comma-separated, or a list).
        test: the images scored on; the built-in set's test split when ``data`` is one.
        image_size: input side for every body; default: the first body folder's own size, else
            ``rules.default_image_size`` for the data and the first body.
        knn_k, knn_temperature: the kNN's neighbours (at most the labeled images) and T.
        output: a folder to write ``probe.json``, ``probe.md`` and ``probe.png`` into.
        device: ``auto``, ``cpu``, ``cuda``...
        batch_size: images per forward pass.
        show_progress: progress bars for the feature passes.

    Returns:
        ``bodies`` (name, spec, weights, stages...), ``image_size``, ``data``, ``test``,
        ``num_test``, ``knn`` and ``linear`` settings, ``rows`` (one per body × stage × K ×
        seed), ``summary`` (mean and sd over seeds), ``best_stage`` (per body, by mean linear
        accuracy at the largest K), ``draws`` (the labeled indices into ``data`` per K and seed)
        and ``seconds``.

    Raises:
        ConfigError: no body, an unknown body spec or stage name, a folder ``data`` without
            ``test``, K or knn_k below 1, no seed.
        DataError: the data cannot be read, or a class has fewer than K images.
    """
    if not bodies:
        raise ConfigError(f"probe needs at least one body: {FORMS}")
    ks = sorted({int(k) for k in labels_per_class})
    if not ks or ks[0] < 1:
        raise ConfigError(f"labels per class must be whole numbers of at least 1, got {list(labels_per_class)}")
    seed_list = list(dict.fromkeys(int(s) for s in seeds))
    if not seed_list:
        raise ConfigError("probe needs at least one seed")
    if knn_k < 1 or not knn_temperature > 0:
        raise ConfigError(f"kNN needs k ≥ 1 and a temperature above 0, got k={knn_k}, T={knn_temperature}")
    dev = pick_device(device)

    loaded = [load_body(str(spec), device="cpu") for spec in bodies]
    names = _unique_names(loaded)
    stage_idx = [resolve_stages(b.model, stages, body=n) for b, n in zip(loaded, names)]

    train = resolve(data, split="train")
    test_set = _test_set(data, test, list(train.classes))
    num_classes = len(train.classes)
    size = image_size or next((b.image_size for b in loaded if b.image_size), None)
    if size is None:
        size = rules.default_image_size(native_size=train.typical_size(), weights_size=loaded[0].model.preprocess.image_size,
                                        strategy="linear")
    size = int(size)

    draws = {(k, s): few_shot(train.labels, k, s, classes=train.classes)[0] for k in ks for s in seed_list}
    union = np.unique(np.concatenate(list(draws.values())))
    pos = np.full(len(train), -1, dtype=np.int64)
    pos[union] = np.arange(len(union))
    console.print(f"  [bold]probe[/bold] {len(loaded)} bod{'y' if len(loaded) == 1 else 'ies'} on {len(union)} labeled images of "
                  f"{train.name} (K = {', '.join(map(str, ks))}; seeds {', '.join(map(str, seed_list))}), "
                  f"{len(test_set)} test images, {size}px")

    t0 = time.perf_counter()
    workers = default_workers()
    x_lab = images_tensor(train.subset(union), size=None if train.is_array else size, num_workers=workers)
    x_test = images_tensor(test_set, size=None if test_set.is_array else size, num_workers=workers)
    y_lab, y_test = train.labels[union], np.asarray(test_set.labels)
    feats: list[tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]] = []
    steps = math.ceil(len(x_lab) / batch_size) + math.ceil(len(x_test) / batch_size)
    for body, name, idx in zip(loaded, names, stage_idx):
        model = body.model.to(dev)
        prepare = Prepare(model.preprocess, size, dev)
        with EpochProgress(f"features {name}", steps, show_progress, transient=True) as bar:
            lab = stage_features(model, x_lab, stages=idx, prepare=prepare, device=dev, batch_size=batch_size, bar=bar)
            tst = stage_features(model, x_test, stages=idx, prepare=prepare, device=dev, batch_size=batch_size, bar=bar)
        body.model = model.cpu()
        feats.append((lab, tst))
    t_feat = time.perf_counter() - t0

    t1 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for body, name, idx, (lab, tst) in zip(loaded, names, stage_idx, feats):
        for i in idx:
            f_lab, f_test = lab[i].numpy().astype(np.float64), tst[i].numpy().astype(np.float64)
            for k in ks:
                for s in seed_list:
                    at = pos[draws[(k, s)]]  # the draw's rows among the labeled images' features
                    scores = score_draw(f_lab[at], y_lab[at], f_test, y_test, draw=draws[(k, s)], knn_k=knn_k,
                                        knn_temperature=knn_temperature, num_classes=num_classes)
                    rows.append({"body": name, "stage": body.model.stage_names[i], "labels_per_class": k, "seed": s, **scores})
    t_probe = time.perf_counter() - t1

    summary = _summarise(rows)
    largest = ks[-1]
    best_stage = {}
    for name in names:
        at = [r for r in summary if r["body"] == name and r["labels_per_class"] == largest]
        best_stage[name] = max(at, key=lambda r: r["linear_mean"])["stage"]  # ties: the earlier stage
    result: dict[str, Any] = {
        "bodies": [_body_record(n, str(spec), b, idx) for n, spec, b, idx in zip(names, bodies, loaded, stage_idx)],
        "image_size": size, "data": data, "test": test or f"{data} (test split)", "num_train": len(train),
        "num_test": len(test_set), "classes": list(train.classes), "labels_per_class": ks, "seeds": seed_list,
        "knn": {"k": int(knn_k), "temperature": float(knn_temperature), "similarity": "cosine", "weights": "exp(sim / T)"},
        "linear": {"C": LINEAR_C, "penalty": "l2", "solver": "lbfgs", "max_iter": LINEAR_MAX_ITER,
                   "standardize": "mean and sd of the labeled draw"},
        "features": "global average pool of the stage output, eval mode",
        "rows": rows, "summary": summary, "best_stage": best_stage,
        "draws": [{"labels_per_class": k, "seed": s, "indices": draws[(k, s)].tolist()} for k in ks for s in seed_list],
        "seconds": {"features": round(t_feat, 3), "probes": round(t_probe, 3)},
        "device": str(dev),
    }
    notes = [f"{n} was pretrained at {b.image_size}px and is measured at {size}px" for n, b in zip(names, loaded)
             if b.image_size and b.image_size != size]
    if notes:
        result["notes"] = notes
    for r in summary:
        if r["stage"] == best_stage[r["body"]] and r["labels_per_class"] == largest:
            console.print(f"  {r['body']} ({r['stage']}), K={largest}: linear {_pm(r['linear_mean'], r['linear_sd'])}, "
                          f"kNN {_pm(r['knn_mean'], r['knn_sd'])}")
    if output is not None:
        write_outputs(result, output)
    return result


def score_draw(train_feats: np.ndarray, train_labels: np.ndarray, test_feats: np.ndarray, test_labels: np.ndarray, *,
               draw: np.ndarray, knn_k: int, knn_temperature: float, num_classes: int) -> dict[str, Any]:
    """Both probes on one labeled draw (``draw``: its indices into the labeled set, the images
    ``train_feats`` are the features of), scored on the test features."""
    pipe = fit_linear(train_feats, train_labels)
    knn = knn_predict(train_feats, train_labels, test_feats, k=knn_k, temperature=knn_temperature, num_classes=num_classes)
    n = len(test_labels)
    return {
        "linear_acc": float(np.mean(pipe.predict(test_feats) == test_labels)) if n else float("nan"),
        "knn_acc": float(np.mean(knn == test_labels)) if n else float("nan"),
        "knn_k": min(int(knn_k), len(draw)), "linear_converged": converged(pipe),
    }


def _summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample sd (ddof=1; 0 for one seed) over seeds, per body × stage × K, in the
    rows' order."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["body"], r["stage"], r["labels_per_class"]), []).append(r)
    out = []
    for (body, stage, k), rs in groups.items():
        entry: dict[str, Any] = {"body": body, "stage": stage, "labels_per_class": k}
        for what in ("linear", "knn"):
            v = np.array([r[f"{what}_acc"] for r in rs], dtype=np.float64)
            entry[f"{what}_mean"] = float(v.mean())
            entry[f"{what}_sd"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
        entry["seeds"] = [r["seed"] for r in rs]
        out.append(entry)
    return out


# ---------------------------------------------------------------------------------------------
# Files


def _pm(mean: float, sd: float) -> str:
    return f"{mean:.4f} ± {sd:.4f}"


def settings_line(result: dict[str, Any]) -> str:
    knn, lin = result["knn"], result["linear"]
    return (f"Frozen features (global average pool) at {result['image_size']}px for every body; test: {result['test']} "
            f"({result['num_test']} images); seeds {', '.join(map(str, result['seeds']))}. Linear probe: features standardised "
            f"on the labeled draw, L2 logistic regression, C={lin['C']}. kNN: cosine similarity, k=min({knn['k']}, labeled images), "
            f"votes weighted exp(sim/T), T={knn['temperature']}. Mean ± sample sd over seeds.")


def markdown(result: dict[str, Any]) -> str:
    """``probe.md``: the settings, then body × stage × K with both probes' mean ± sd."""
    lines = ["# Probe", "", settings_line(result), ""]
    for b in result["bodies"]:
        lines.append(f"- **{b['name']}**: {b['spec']} ({b['backbone']}, {b['weights']}); best stage {result['best_stage'][b['name']]}")
    for note in result.get("notes", []):
        lines.append(f"- note: {note}")
    lines += ["", "| body | stage | labels/class | linear | kNN | seeds |", "|---|---|---:|---:|---:|---:|"]
    for r in result["summary"]:
        lines.append(f"| {r['body']} | {r['stage']} | {r['labels_per_class']} | {_pm(r['linear_mean'], r['linear_sd'])} | "
                     f"{_pm(r['knn_mean'], r['knn_sd'])} | {len(r['seeds'])} |")
    return "\n".join(lines) + "\n"


def curves_png(result: dict[str, Any]) -> bytes:
    """Test accuracy against labels per class (log axis), one colour per body at its best stage:
    solid the linear probe, dashed the kNN; the band is ± one sd over seeds."""
    from .report import plots

    plt = plots.plt
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    cmap = plt.get_cmap("tab10")
    for c, (body, stage) in enumerate(result["best_stage"].items()):
        rs = sorted((r for r in result["summary"] if r["body"] == body and r["stage"] == stage), key=lambda r: r["labels_per_class"])
        xs = np.array([r["labels_per_class"] for r in rs])
        for what, style, label in (("linear", "-o", "linear"), ("knn", "--s", "kNN")):
            mean = np.array([r[f"{what}_mean"] for r in rs])
            sd = np.array([r[f"{what}_sd"] for r in rs])
            ax.plot(xs, mean, style, color=cmap(c % cmap.N), ms=4, label=f"{body} ({stage}) {label}")
            if sd.any():
                ax.fill_between(xs, mean - sd, mean + sd, color=cmap(c % cmap.N), alpha=0.12, lw=0)
    ks = result["labels_per_class"]
    ax.set_xscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("labels per class")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"frozen features at {result['image_size']}px")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    return plots._png(fig)


def write_outputs(result: dict[str, Any], output: str | Path) -> Path:
    """``probe.json``, ``probe.md`` and ``probe.png`` in ``output`` (created), each written
    atomically."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "probe.json", result)
    atomic_write(out / "probe.md", lambda tmp: Path(tmp).write_text(markdown(result), encoding="utf-8"))
    png = curves_png(result)
    atomic_write(out / "probe.png", lambda tmp: Path(tmp).write_bytes(png))
    console.print(f"  wrote {out / 'probe.json'}, probe.md and probe.png")
    return out
