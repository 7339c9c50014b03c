"""``headstart ensemble``: finished runs (any architectures, input sizes, strategies, kNN heads
included) combined into one run of kind ``ensemble`` — and, with ``--members`` /
``--backbones``, the members trained first, in one command.

Wiring only: the rules, their out-of-fold comparison and the diversity measures are in
``ensemble/``; the module that runs the members is ``ensemble/model.py``; the folder is read
back by ``runfolder.load_run`` like any run.

Held-out images, and how leakage is kept out: the fitted rules (``weighted``, ``accuracy``,
``stack``) are fitted on labeled images **no member trained on**. With ``--val DATA`` those are
the images of DATA, less any whose content (a file's bytes, an array's pixels) equals one of a
member's training images or one of the files of the ``--unlabeled`` folder it learned from (a
built-in set's ``pool`` is the rest of its training split, which a ``--val`` folder's files or a
built-in test split never equal: the pool already drops the test split's images). Without it they are the images every member held out for validation
(the intersection of their ``val_indices`` on the same data) less any other member trained on
(members with different split seeds hold out different images). Members trained on every label
(few labels per class: no validation split) leave no held-out images: then only the soft and
hard votes are possible, and ``--rule auto`` says so.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from safetensors.numpy import save_file

from .console import console
from .data import ImageSet, resolve
from .data.fingerprint import file_digest
from .data.notices import report_skipped
from .data.sources import is_builtin
from .data.tensors import align_classes, images_tensor
from .ensemble import RULES, choose_rule, compare_rules, diversity
from .ensemble.calibrate import apply_temperature
from .ensemble.calibrate import calibrate as fit_calibration
from .ensemble.model import EnsembleModel, MemberInput
from .ensemble.select import folds_for
from .errors import ConfigError, DataError
from .fileio import atomic_write
from .predictor import Predictor
from .report import classification_metrics
from .report.metrics import calibration, paired_difference
from .runfolder import ENSEMBLE, clear_replaced_run, read_splits, refuse_finished, write_card, write_json, write_yaml
from .semi.pool import content_hashes
from .version import __version__

AUTO = "auto"
SPEED_IMAGES = 256
"""Images timed per member (and for the whole ensemble) for the img/s column: four batches of
64 after two warm-up batches; enough for a stable ratio, cheap beside any evaluation."""


@dataclass
class HeldOut:
    """Labeled images no member trained on: what the fitted rules are fitted and compared on."""

    images: ImageSet
    source: str
    rows: list[int] | None  # indices into the members' data when derived from their splits
    dropped: int  # images of --val left out because a member trained on them (or saw them unlabeled)


def _member_train_hashes(predictor: Predictor) -> set[str]:
    """The content of every image a member learned from: its training images and, when it
    trained with ``--unlabeled``, its unlabeled pool (see the module's docstring)."""
    splits = read_splits(predictor.run.path)
    seen: set[str] = set()
    if splits.get("train_indices"):
        full = resolve(splits["data"], split="train")
        seen |= set(content_hashes(full.subset(np.asarray(splits["train_indices"], dtype=np.int64))))
    pool = splits.get("unlabeled") or {}
    source = pool.get("source") if isinstance(pool, dict) else None
    if source and source != "pool" and Path(source).is_dir():
        from .data import load_unlabeled

        seen |= set(content_hashes(load_unlabeled(source, validate=False)))
    return seen


def held_out(members: Sequence[Predictor], val: str | None, on_bad_image: str = "skip") -> HeldOut | None:
    """The held-out labeled images (see the module's docstring), or None when there are none."""
    classes = members[0].classes
    if val is not None:
        images = align_classes(resolve(val, split="test", on_bad_image=on_bad_image), classes, val)
        report_skipped(images)
        trained: set[str] = set()
        for m in members:
            trained |= _member_train_hashes(m)
        keep = np.array([h not in trained for h in content_hashes(images)], dtype=bool)
        if not keep.any():
            raise DataError(f"every image of --val {val} trained one of the members (as a labeled or an unlabeled image); give "
                            "labeled images none of them trained on")
        return HeldOut(images.subset(np.flatnonzero(keep)), val, None, int((~keep).sum()))
    splits = [read_splits(m.run.path) for m in members]
    if any(not s for s in splits) or len({s.get("data") for s in splits}) != 1:
        return None
    vals = {s.get("val_data") for s in splits}
    if len(vals) == 1 and None not in vals:  # every member validated on the same --val folder: nobody trained on it
        v = vals.pop()
        return HeldOut(align_classes(resolve(v, split="test", on_bad_image=on_bad_image), classes, v), v, None, 0)
    # Every member held these out, so none trained on them (a member's training and validation
    # images are disjoint): the intersection, never the union, of the validation sets.
    rows = set(splits[0].get("val_indices") or [])
    for s in splits[1:]:
        rows &= set(s.get("val_indices") or [])
    if not rows:
        return None
    ordered = sorted(rows)
    data = splits[0]["data"]
    full = resolve(data, split="train", on_bad_image=on_bad_image)
    return HeldOut(align_classes(full.subset(np.asarray(ordered, dtype=np.int64)), classes, data),
                   f"{data} (the members' validation images)", ordered, 0)


def _member_probs(members: Sequence[Predictor], images: ImageSet) -> np.ndarray:
    return np.stack([m.proba_imageset(images, share_features=True) for m in members])


def images_per_second(fn: Any, x: torch.Tensor) -> float:
    """Images per second of ``fn`` over ``x`` in batches of 64, after two warm-up batches."""
    with torch.inference_mode():
        fn(x[:64])  # two warm-up batches: the first calls pick their kernels
        fn(x[:64])
        t0 = time.perf_counter()
        for i in range(0, len(x), 64):
            fn(x[i:i + 64])
        return len(x) / (time.perf_counter() - t0)


def _scores(p: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    c = calibration(p, labels)
    return {"accuracy": c["accuracy"], "nll": c["nll"], "ece": c["ece"], "reliability": c["bins"]}


def build_ensemble(
    runs: Sequence[str | Path],
    *,
    output: str | Path,
    rule: str = AUTO,
    val: str | None = None,
    test: str | None = None,
    device: str = "auto",
    overwrite: bool = False,
    on_bad_image: str = "skip",
    calibrate: bool = True,
) -> dict[str, Any]:
    """Combine finished runs into an ensemble run folder at ``output`` and score it.

    ``rule`` is a registered rule (``headstart list`` shows them) or ``auto`` (chosen on the
    held-out images, see ``ensemble/select.py``). ``test`` (default: the official test split when
    every member trained on the same built-in set) scores each member, each rule and the
    ensemble; it never chooses anything. With ``calibrate`` (the default) and held-out images,
    the combined probabilities are temperature-scaled (``ensemble/calibrate.py``: the
    temperature fitted on the held-out images, kept only when it lowers their NLL out of fold).
    Returns the metrics written to ``metrics.json``."""
    t0 = time.perf_counter()
    out = Path(output)
    refuse_finished(out, overwrite)
    if rule != AUTO and rule not in RULES:
        raise ConfigError(f"--rule {rule!r} is not a rule; choose auto or one of: {', '.join(RULES.names())}")
    if len(runs) < 2:
        raise ConfigError("an ensemble needs at least 2 runs; give their folders (or --members N to train them)")
    paths = [Path(r).resolve() for r in runs]
    if len(set(paths)) != len(paths):
        raise ConfigError("the same run is given twice; give each member once (weights come from --rule weighted)")
    members = []
    for p in paths:
        m = Predictor(p, device=device)
        if m.run.kind != "classifier":
            raise ConfigError(f"{p} is a run of kind {m.run.kind!r}; an ensemble's members are classifier runs (give its members instead)")
        members.append(m)
    classes = members[0].classes
    for p, m in zip(paths[1:], members[1:]):
        if m.classes != classes:
            raise ConfigError(f"{p} has classes {m.classes}, {paths[0]} has {classes}: members must share the same classes, in order")
    held = held_out(members, val, on_bad_image)
    comparison: dict[str, Any] = {}
    if held is not None:
        console.print(f"  held-out images: {len(held.images)} from {held.source}"
                      + (f" ({held.dropped} left out: a member trained on them or learned from them unlabeled)" if held.dropped else ""))
        hp = _member_probs(members, held.images)
        comparison = compare_rules(hp, held.images.labels)
    if rule == AUTO:
        if held is None:
            chosen, why = "soft", ("soft vote: there are no held-out labeled images (the members trained on every label, or on "
                                   "different data), so no rule can be fitted or compared; give --val DATA (labeled images none of "
                                   "them trained on) to let weighted or stack compete")
        else:
            chosen, why = choose_rule(comparison)
    else:
        chosen, why = rule, f"{rule}: asked for (--rule)"
        if RULES.get(rule).fitted and held is None:
            raise ConfigError(
                f"--rule {rule} is fitted on held-out labeled images, and these members have none (they trained on every label, "
                "or on different data): give --val DATA (labeled images none of them trained on), or use --rule soft or hard"
            )
    fitted = {} if held is None else {name: RULES.get(name).fit(hp, held.images.labels) for name in RULES}
    params = fitted[chosen] if chosen in fitted else RULES.get(chosen).fit(np.ones((len(members), 1, len(classes))), np.zeros(1, dtype=np.int64))
    console.print(f"  [bold]rule[/bold] {why}")
    calib = _calibration(comparison, chosen, params, hp if held is not None else None, held, calibrate)
    if calib["temperature"] != 1.0:
        params = {**params, "temperature": np.array([calib["temperature"]])}
    console.print(f"  [bold]calibration[/bold] {calib['why']}")

    trained_on = {m.run.meta.get("trained_on") for m in members}
    data = trained_on.pop() if len(trained_on) == 1 else None
    if test is None and data is not None and is_builtin(data):
        test = data
    model = EnsembleModel([m.model for m in members], [MemberInput(m.run.preprocess, m.run.image_size) for m in members], chosen, params)
    model.eval().to(members[0].device)

    metrics: dict[str, Any] = {
        "kind": ENSEMBLE, "rule": chosen, "why": why, "members": [str(p) for p in paths],
        "held_out": None if held is None else {"source": held.source, "images": len(held.images), "dropped_as_trained_on": held.dropped},
        "held_out_rules": {k: {kk: vv for kk, vv in v.items() if kk not in ("right", "probs")} for k, v in comparison.items()},
        "weights": {k: v.tolist() for k, v in params.items() if k == "weights"},
        "calibration": calib,
    }
    if test is not None:
        metrics["test"] = _score_test(members, paths, fitted or {chosen: params}, chosen, model, test, on_bad_image, calib["temperature"])
    metrics["seconds"] = time.perf_counter() - t0
    _write(out, paths=paths, members=members, rule=chosen, why=why, params=params, metrics=metrics, held=held, data=data,
           request={"runs": [str(p) for p in paths], "rule": rule, "val": val, "test": test, "device": device}, overwrite=overwrite)
    metrics["run_dir"] = str(out)
    return metrics


def _calibration(comparison: dict[str, Any], chosen: str, params: dict[str, np.ndarray], held_probs: np.ndarray | None,
                 held: HeldOut | None, wanted: bool) -> dict[str, Any]:
    """The ensemble's temperature and why (see ``ensemble/calibrate.py``), fitted on the chosen
    rule's held-out predictions: out of fold for a fitted rule, so a layer's in-sample
    confidence never sets it."""
    if not wanted:
        return {"temperature": 1.0, "why": "temperature 1: asked for (--no-calibrate)"}
    if held is None or held_probs is None:
        return {"temperature": 1.0, "why": "temperature 1: no held-out labeled images to fit one on (give --val DATA to calibrate)"}
    labels = held.images.labels
    row = comparison.get(chosen) or {}
    pred = row["probs"] if row.get("available") else RULES.get(chosen).combine(held_probs, params)
    return fit_calibration(pred, labels, folds=folds_for(labels))


def member_row(meta: dict[str, Any], path: Path) -> dict[str, Any]:
    """What the tables say about a member (its ``model.json``) besides its scores."""
    return {"run": str(path), "backbone": meta.get("backbone"), "image_size": int(meta.get("image_size", 0)),
            "strategy": meta.get("strategy"), "head": (meta.get("head") or {}).get("type", "linear")}


def ensemble_scores(probs: np.ndarray, combined: np.ndarray, labels: np.ndarray, classes: Sequence[str],
                    rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Each member's and the ensemble's accuracy, NLL, ECE and reliability table on the same
    labeled images, the ensemble's confusion matrix, its gain over the best member (with
    McNemar's test) and the members' diversity: what ``metrics.json``, ``eval`` and the report
    show."""
    labels = np.asarray(labels)
    members = [{**r, **_scores(p, labels)} for r, p in zip(rows, probs)]
    best = int(np.argmax([r["accuracy"] for r in members]))
    ens = _scores(combined, labels)
    return {
        "num_images": int(len(labels)),
        "members": members,
        "best_member": members[best]["run"],
        "ensemble": {**ens, **classification_metrics(predictions=combined.argmax(1), labels=labels, classes=list(classes))},
        "gain_over_best_member": ens["accuracy"] - members[best]["accuracy"],
        "versus_best_member": paired_difference(combined.argmax(1) == labels, probs[best].argmax(1) == labels),
        "diversity": diversity(probs, labels),
    }


def _score_test(members: list[Predictor], paths: list[Path], fitted: dict[str, dict[str, np.ndarray]], chosen: str,
                model: EnsembleModel, test: str, on_bad_image: str, temperature: float = 1.0) -> dict[str, Any]:
    """Each member, each rule and the chosen one (temperature-scaled when calibrated; also
    without, as ``uncalibrated``) on the test images, with diversity and cost."""
    classes = members[0].classes
    images = align_classes(resolve(test, split="test", on_bad_image=on_bad_image), classes, test)
    report_skipped(images)
    labels = images.labels
    probs = _member_probs(members, images)
    rules = {name: RULES.get(name).combine(probs, fitted.get(name) or RULES.get(name).fit(probs[:, :1], labels[:1]))
             for name in RULES if name in fitted or not RULES.get(name).fitted}
    combined = rules[chosen] if temperature == 1.0 else apply_temperature(rules[chosen], temperature)
    out = {"data": test, **ensemble_scores(probs, combined, labels, classes, [member_row(m.run.meta, p) for m, p in zip(members, paths)])}
    out["uncalibrated"] = {k: v for k, v in _scores(rules[chosen], labels).items() if k != "reliability"}
    timed = images.subset(np.arange(min(SPEED_IMAGES, len(images))))
    for row, m in zip(out["members"], members):
        x = m.images_of(timed)
        row["parameters"] = sum(t.numel() for t in m.model.parameters()) + sum(b.numel() for b in m.model.buffers())
        row["images_per_second"] = images_per_second(lambda b, m=m: m.model(m.prepare(b)), x)
    sample = images_tensor(timed, size=None if timed.is_array else max(m.run.image_size for m in members), num_workers=2)
    out["ensemble"]["images_per_second"] = images_per_second(lambda b: model(b.to(members[0].device)), sample)
    out["ensemble"]["parameters"] = sum(r["parameters"] for r in out["members"])
    out["rules"] = {name: {k: v for k, v in _scores(p, labels).items() if k != "reliability"} for name, p in rules.items()}
    return out


def _write(out: Path, *, paths: list[Path], members: list[Predictor], rule: str, why: str, params: dict[str, np.ndarray],
           metrics: dict[str, Any], held: HeldOut | None, data: str | None, request: dict[str, Any], overwrite: bool) -> None:
    """The ensemble's run folder: ``model.json`` last (as for every run)."""
    import os

    out.mkdir(parents=True, exist_ok=True)
    marker = out / "model.json"
    if marker.exists():
        marker.unlink()
    clear_replaced_run(out)
    atomic_write(out / "model.safetensors", lambda tmp: save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in params.items()}, tmp))
    write_yaml(out / "config.yaml", {"requested": request, "resolved": {"rule": rule}, "reasons": {"rule": why}})
    write_json(out / "metrics.json", metrics)
    trained = sorted({i for m in members for i in (read_splits(m.run.path).get("train_indices") or [])})
    write_json(out / "splits.json", {"data": data, "train_indices": trained, "val_indices": (held.rows or []) if held else [],
                                     "val_data": held.source if held is not None and held.rows is None else None})
    entries = []
    for p, m in zip(paths, members):
        rel = os.path.relpath(p, out.resolve())
        entries.append({"path": rel, "absolute": str(p), "backbone": m.run.meta.get("backbone"), "image_size": m.run.image_size,
                        "strategy": m.run.meta.get("strategy"), "weights_sha256": file_digest(p / "model.safetensors")})
    meta = {
        "kind": ENSEMBLE, "headstart_version": __version__, "rule": rule, "members": entries,
        "classes": list(members[0].classes), "num_classes": len(members[0].classes),
        "image_size": max(m.run.image_size for m in members), "trained_on": data,
    }
    write_json(marker, meta)
    write_card(out)


def train_members(config: Any, *, members: int, backbones: Sequence[str] | None, output: str | Path, train_one: Any) -> list[Path]:
    """``--members N`` / ``--backbones a,b``: the members of one recipe (``config``), trained
    into ``OUTPUT/members/``: for each backbone (default: the recipe's), N seeds ``--seed``,
    ``--seed+1``...; all on the same labeled draw and validation split (``--split-seed`` is the
    recipe's), so their held-out images are shared. A member already finished is kept (rerun the
    command to finish an interrupted one); ``--time-budget`` is shared among the members."""
    from .data.labeled import split_seed

    if members < 1:
        raise ConfigError(f"--members {members}: give at least 1")
    names = list(backbones) if backbones else [config.backbone]
    total = members * len(names)
    if total < 2:
        raise ConfigError("an ensemble needs at least 2 members: give --members 2 or more, or several --backbones")
    root = Path(output) / "members"
    done = []
    for b in names:
        for i in range(members):
            path = root / (f"{b}-seed{config.seed + i}" if backbones else f"seed{config.seed + i}")
            cfg = config.with_updates(
                backbone=b, seed=config.seed + i, split_seed=split_seed(config), output=str(path), overwrite=False,
                time_budget=None if config.time_budget is None else config.time_budget / total,
            )
            if (path / "model.json").is_file():
                console.print(f"  [dim]member {path} already trained[/dim]")
            else:
                console.print(f"  [bold]member {len(done) + 1}/{total}[/bold] {path}")
                train_one(dataclasses.replace(cfg))
            done.append(path)
    return done


def report_ensemble(run_dir: str | Path, data: str | None = None, *, output: str | Path | None = None, device: str = "auto") -> dict[str, Any]:
    """The HTML report of an ensemble run: the rule and why, the rules on held-out images, each
    member beside the ensemble (accuracy, NLL, ECE, img/s), the reliability diagram, pairwise
    disagreement, the confusion matrix. From the test scores in ``metrics.json``, or, with
    ``data``, from scoring it now (``headstart eval``)."""
    import json

    import yaml

    from .api_predict import evaluate
    from .report import plots
    from .report.html import Section, render
    from .runfolder import load_run, read_config

    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    run = load_run(run_dir, device="cpu")  # checks the members are the ones the ensemble was built with
    saved = json.loads((run_dir / "metrics.json").read_text())
    if data is not None or not saved.get("test"):
        if data is None and not run.meta.get("trained_on"):
            raise DataError(f"{run_dir} holds no test scores: give labeled images to report on (`headstart report {run_dir} DATA`)")
        e = evaluate(run_dir, data, device=device)
        scores = {"data": e["data"], "num_images": e["num_images"], **e["ensemble"],
                  "ensemble": {**e["calibration"], "reliability": e["calibration"]["bins"], **{k: e[k] for k in ("confusion_matrix", "per_class")}}}
        source = f"scored now on {e['data']}"
    else:
        scores, source = saved["test"], f"scored when the ensemble was built, on {saved['test']['data']}"
    classes = run.classes
    names = [f"m{i + 1}" for i in range(len(scores["members"]))]
    ens = scores["ensemble"]
    sections = []
    s = Section("summary", "Ensemble")
    s.text(f"{len(names)} members combined by the {run.meta['rule']} rule: {saved.get('why', '')}")
    s.table([{"model": n, "run": r["run"], "backbone": r["backbone"], "size": r["image_size"], "strategy": r["strategy"], "head": r["head"],
              "accuracy": r["accuracy"], "NLL": r["nll"], "ECE": r["ece"], "img/s": r.get("images_per_second")}
             for n, r in zip(names, scores["members"])]
            + [{"model": f"ensemble ({run.meta['rule']})", "run": str(run_dir), "accuracy": ens["accuracy"], "NLL": ens["nll"], "ECE": ens["ece"],
                "img/s": ens.get("images_per_second")}])
    v = scores["versus_best_member"]
    s.text(f"{scores['num_images']} labeled images ({source}). Gain over the best member: {scores['gain_over_best_member'] * 100:+.2f} points "
           f"(McNemar z = {v['z']:.1f}: {'beyond' if v['beyond_noise'] else 'within'} noise; ensemble alone right on {v['a_only']}, "
           f"best member alone on {v['b_only']}).")
    if scores.get("rules"):
        s.table([{"rule": k, **r} for k, r in scores["rules"].items()], ["rule", "accuracy", "nll", "ece"])
        s.text("Each rule on the same test images (fitted rules fitted on the held-out images only); the test images chose nothing.")
    sections.append(s)
    held = saved.get("held_out_rules") or {}
    s = Section("rules", "Choosing the rule")
    if held:
        s.text(f"On {saved['held_out']['images']} held-out images ({saved['held_out']['source']}), no member trained on; the fitted rules "
               "are scored out of fold (each fold combined by the rule fitted on the other folds).")
        s.table([{"rule": k, **({kk: r.get(kk) for kk in ("accuracy", "nll", "ece", "folds")} if r.get("available") else {"accuracy": r["why"]})}
                 for k, r in held.items()], ["rule", "accuracy", "nll", "ece", "folds"])
    else:
        s.text("No held-out labeled images (the members trained on every label): only the soft and hard votes, which fit nothing, were possible.")
    sections.append(s)
    s = Section("calibration", "Calibration")
    s.figure(plots.reliability({**{f"{n} ({r['backbone']})": r["reliability"] for n, r in zip(names, scores["members"])},
                                f"ensemble ({run.meta['rule']})": ens["reliability"]}),
             "Reliability diagram: accuracy against confidence per bin (15 equal-width bins); ECE is the count-weighted gap to the diagonal.")
    sections.append(s)
    d = scores["diversity"]
    s = Section("diversity", "Diversity")
    s.text(f"Mean pairwise disagreement {d['mean_disagreement']:.3f}; oracle accuracy (some member right) {d['oracle_accuracy']:.4f}"
           + (f"; mean correlation of the members' errors {d['error_correlation']:.2f}" if d["error_correlation"] is not None else "")
           + ". An ensemble gains only where its members disagree.")
    s.figure(plots.matrix(d["disagreement"], names, "pairwise disagreement"), "Share of images on which two members predict different classes.")
    sections.append(s)
    s = Section("errors", "Errors")
    s.figure(plots.confusion(ens["confusion_matrix"], classes), "The ensemble's confusion matrix (rows: true class, columns: predicted).")
    sections.append(s)
    s = Section("config", "Configuration")
    s.code(yaml.safe_dump(read_config(run_dir), sort_keys=False))
    sections.append(s)
    out = Path(output) if output else run_dir / "report.html"
    page = render(f"headstart report — {run_dir.name} (ensemble)",
                  f"{run_dir} · {len(names)} members · {run.meta['rule']} · accuracy {ens['accuracy']:.3f} on {scores['num_images']} images", sections)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    return {"report": str(out), "bytes": len(page.encode()), "sections": [x.id for x in sections], "images": scores["num_images"],
            "accuracy": ens["accuracy"], "method": "ensemble", "layer": None, "bias_flags": [], "seconds": {"total": time.perf_counter() - t0}}
