"""The demo: the main job end to end on real data that installs offline.

Fashion-MNIST with 10 labels per class (Debian package ``dataset-fashion-mnist``) when it is
installed, else scikit-learn's digits, which always is. It trains the memorisation baseline,
a linear probe, a partial fine-tune from real ImageNet weights and ``auto`` (the strategy
advisor measures the data and chooses), scores each on the official test split, shows a few
predictions, writes the HTML report of the best run, and says where everything is.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.table import Table

from .api import evaluate, predict, train
from .api_explain import report
from .config import TrainConfig
from .data import BUILTIN_DATASETS
from .engine.progress import console
from .errors import DataError


def _pick_dataset() -> str:
    try:
        BUILTIN_DATASETS.get("fashion-mnist")(split="test", root=None)
        return "fashion-mnist"
    except DataError as exc:
        console.print(
            f"[yellow]Fashion-MNIST is not installed ({exc}).[/yellow]\n"
            "  The demo uses scikit-learn's digits instead. For the real demo: "
            "sudo apt-get install dataset-fashion-mnist"
        )
        return "digits"


def run_demo(*, output: str = "runs/demo", labels_per_class: int = 10, device: str = "auto") -> list[dict]:
    t_start = time.perf_counter()
    data = _pick_dataset()
    out = Path(output)
    console.rule(f"[bold]headstart demo: {data}, {labels_per_class} labels per class, EfficientNet-Lite0 (ImageNet)")
    rows = []
    for strategy in ("knn", "linear", "partial", "auto"):
        t0 = time.perf_counter()
        result = train(
            TrainConfig(
                data=data,
                output=str(out / strategy),
                strategy=strategy,
                labels_per_class=labels_per_class,
                device=device,
                overwrite=True,
            )
        )
        train_s = time.perf_counter() - t0
        m = evaluate(result.run_dir, device=device)
        rows.append({"strategy": strategy, "accuracy": m["accuracy"], "train_s": train_s, "eval_s": m["seconds"], "run": str(result.run_dir)})
        chose = f" (chose {result.resolved['strategy']})" if strategy == "auto" else ""
        console.print(f"[bold]{strategy}[/bold]{chose}: test accuracy {m['accuracy']:.4f} ({m['num_images']} test images), trained in {train_s:.0f} s")

    table = Table(title=f"{data}: {labels_per_class} labels/class, official test split")
    for col in ("strategy", "test accuracy", "train time", "run folder"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["strategy"], f"{r['accuracy']:.4f}", f"{r['train_s']:.0f} s", r["run"])
    console.print(table)

    best = max(rows, key=lambda r: r["accuracy"])
    sample_dir = out / "sample-images"
    _write_samples(data, sample_dir)
    preds = predict(best["run"], [str(sample_dir)], top_k=2, device=device)
    console.print(f"predictions of the best run ({best['strategy']}) on {sample_dir}:")
    for p in preds["predictions"]:
        top = ", ".join(f"{t['class']} {t['probability']:.2f}" for t in p["top"])
        console.print(f"  {Path(p['path']).name}: {top}")
    rep = report(best["run"], limit=500, device=device)
    flags = "; ".join(f["message"] for f in rep["bias_flags"]) or "no class flagged"
    console.print(f"report of the best run: {rep['report']} (CAMs, errors, bias audit: {flags}; feature pictures; {rep['seconds']['total']:.0f} s)")
    console.print(
        "\nWhere to look:\n"
        f"  the report    {rep['report']} (open it in a browser; it is one self-contained file)\n"
        f"  run folders   {out}/<strategy>/ (config.yaml with the reason for every default, metrics.json, eval-*.json)\n"
        f"  the advice    {out}/auto/advice.json (evidence and decision) · headstart advise {data} --labels-per-class {labels_per_class}\n"
        f"  TensorBoard   tensorboard --logdir {out}\n"
        f"  more          headstart eval {best['run']}   ·   headstart predict {best['run']} IMAGES --top-k 3   ·   headstart explain {best['run']} IMAGES --boxes"
    )
    wall = time.perf_counter() - t_start
    console.print(
        f"[bold]demo finished in {wall // 60:.0f} min {wall % 60:02.0f} s[/bold] "
        f"(training {sum(r['train_s'] for r in rows):.0f} s, scoring {sum(r['eval_s'] for r in rows):.0f} s on "
        f"{m['num_images']:,} test images per run, the report {rep['seconds']['total']:.0f} s)"
    )
    return rows


def _write_samples(data: str, folder: Path, n: int = 6) -> None:
    """A few test images as PNG files, named by their true class, to show ``predict`` on files."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    test = BUILTIN_DATASETS.get(data)(split="test", root=None)
    for i in range(n):
        img = test.get_rgb(i, None)
        name = test.classes[int(test.labels[i])].replace("/", "-").replace(" ", "_")
        Image.fromarray(img).save(folder / f"{i:02d}-{name}.png")
