"""The model card: the run folder's ``README.md``, in the Hugging Face model-card form (YAML front
matter, then sections a person reads): what the model is, what it was trained on, how it was
trained and why, how well it does on which images, where it is known to fail, what it is for,
and how to load it.

Everything on the card is read from the run's own files (``model.json``, ``metrics.json``,
``config.yaml``, ``eval*.json``, ``bias-audit.json``, the augmentation audit, ``*.onnx.json``/
``*.pt2.json`` exports): the card states no number the folder does not hold. It is written when a
run is saved and rewritten by ``eval``, ``report`` and ``export``, so it follows what is known.
"""

from __future__ import annotations

from typing import Any

TASKS = {"classifier": "image-classification", "ensemble": "image-classification", "segmenter": "image-segmentation",
         "detector": "object-detection", "body": "image-feature-extraction"}


def _f(v: Any, d: int = 4) -> str:
    return "-" if v is None else (f"{v:.{d}f}" if isinstance(v, float) else str(v))


def _front(model: dict[str, Any]) -> list[str]:
    kind = model.get("kind", "classifier")
    tags = ["headstart", kind, str(model.get("backbone") or "ensemble")]
    return ["---", "library_name: headstart", f"pipeline_tag: {TASKS.get(kind, 'image-classification')}",
            "tags:", *[f"- {t}" for t in tags], "---", ""]


def _scores(kind: str, metrics: dict[str, Any], evals: dict[str, dict[str, Any]]) -> list[str]:
    out = ["## How well it does", ""]
    val = metrics.get("val") or {}
    rows: list[str] = []
    if kind in ("classifier", "ensemble"):
        if val.get("accuracy") is not None:
            rows.append(f"| validation ({val.get('num_images', metrics.get('num_val', '?'))} held-out images) | accuracy {_f(val['accuracy'])} | "
                        f"best epoch {metrics.get('best_epoch', '-')} |")
        for name, e in sorted(evals.items()):
            cal = e.get("calibration") or {}
            rows.append(f"| {e.get('data', name)} ({e.get('num_images', '?')} images{', TTA' if e.get('tta') else ''}) | accuracy "
                        f"{_f(e.get('accuracy'))} | ECE {_f(cal.get('ece'))}, NLL {_f(cal.get('nll'))} |")
    elif kind == "segmenter":
        if val:
            rows.append(f"| validation ({val.get('images', '?')} images) | mIoU {_f(val.get('miou'))} | pixel accuracy "
                        f"{_f(val.get('pixel_accuracy'))}, boundary F {_f(val.get('boundary_f'))} |")
        for name, e in sorted(evals.items()):
            rows.append(f"| {e.get('data', name)} ({e.get('images', '?')} images) | mIoU {_f(e.get('miou'))} | pixel accuracy "
                        f"{_f(e.get('pixel_accuracy'))}, boundary F {_f(e.get('boundary_f'))} |")
    elif kind == "detector":
        if val:
            rows.append(f"| validation ({val.get('images', '?')} images) | mAP@0.5 {_f(val.get('map_50'))} | mAP@0.5:0.95 "
                        f"{_f(val.get('map'))}, CorLoc {_f(val.get('corloc'))} |")
        for name, e in sorted(evals.items()):
            rows.append(f"| {e.get('data', name)} ({e.get('images', '?')} images) | mAP@0.5 {_f(e.get('map_50'))} | mAP@0.5:0.95 "
                        f"{_f(e.get('map'))}, CorLoc {_f(e.get('corloc'))} |")
    if not rows:
        return out + ["No scores yet: run `headstart eval` on labeled images this model has not seen.", ""]
    out += ["| images | score | more |", "|---|---|---|", *rows, ""]
    if kind in ("classifier", "ensemble") and evals:
        worst = []
        for e in evals.values():
            for r in sorted(e.get("per_class") or [], key=lambda r: r.get("recall", 1.0))[:3]:
                worst.append(f"{r['class']} (recall {_f(r.get('recall'), 2)})")
            break
        if worst:
            out += [f"Weakest classes on {next(iter(evals.values())).get('data', 'the evaluation set')}: {', '.join(worst)}.", ""]
    return out


def _failures(bias: dict[str, Any] | None, audit: dict[str, Any] | None) -> list[str]:
    out = ["## Known failure modes", ""]
    items = []
    for flag in (bias or {}).get("flags", []):
        items.append(f"- bias audit: {flag.get('message')}")
    if audit:
        families = audit.get("families") or {}
        for fam in audit.get("flagged", []):
            at = (families.get(fam) or {}).get("flagged_at")
            items.append(f"- augmentation audit: {fam} changes the model's answers (accuracy drops more than {audit.get('max_drop')} from "
                         f"magnitude {at}): images transformed that way are outside what it handles")
        for step in audit.get("run_policy_flagged", []):
            items.append(f"- augmentation audit: the training policy's step {step} reaches a flagged magnitude")
    if not items:
        items = ["- No audit has flagged anything yet. Run `headstart report RUN DATA` (Grad-CAM bias audit) and "
                 "`headstart augment audit RUN DATA` (which transforms change labels) to look for shortcuts."]
    return out + items + [""]


def render(model: dict[str, Any], metrics: dict[str, Any], config: dict[str, Any], *, evals: dict[str, dict[str, Any]] | None = None,
           bias: dict[str, Any] | None = None, audit: dict[str, Any] | None = None, exports: dict[str, dict[str, Any]] | None = None,
           run_name: str = "run") -> str:
    """The card's markdown from the run's files (already read)."""
    kind = model.get("kind", "classifier")
    evals = evals or {}
    classes = model.get("classes") or metrics.get("classes") or []
    resolved = config.get("resolved") or {}
    requested = config.get("requested") or config
    reasons = config.get("reasons") or metrics.get("reasons") or {}
    lines = _front(model)
    lines += [f"# {run_name}", "",
              f"A headstart {kind} ({model.get('backbone', 'members: see model.json')}) over {len(classes)} classes: "
              f"{', '.join(map(str, classes[:20]))}{' …' if len(classes) > 20 else ''}.", ""]
    lines += ["## Training data", ""]
    data = model.get("trained_on") or requested.get("data")
    n_train = metrics.get("num_train", metrics.get("images"))
    n_val = metrics.get("num_val", (metrics.get("val") or {}).get("images"))
    lines += [f"- data: `{data}`" if data else "- data: see config.yaml",
              f"- images: {n_train} trained on" + (f", {n_val} held out for validation" if n_val else "")]
    if metrics.get("boxes") is not None:
        lines.append(f"- boxes: {metrics['boxes']}")
    lines.append("")
    lines += ["## How it was trained, and why", ""]
    facts = [("strategy", model.get("strategy")), ("method", model.get("method")), ("frozen stages", model.get("frozen_stages")),
             ("input size", model.get("image_size")), ("upsampling", model.get("upsample")), ("detector", model.get("detector")),
             ("epochs", len(metrics.get("history") or []) or resolved.get("epochs")), ("kept epoch", metrics.get("best_epoch"))]
    lines += [f"- {k}: {v}" for k, v in facts if v not in (None, "", [])]
    lines += [f"- why {k}: {v}" for k, v in reasons.items()][:14]
    lines.append("")
    lines += _scores(kind, metrics, evals)
    lines += _failures(bias, audit)
    lines += ["## Intended use", "",
              f"Predicting the {len(classes)} classes above on images like the training data (same kind of source, framing and "
              "resolution). Not for decisions about people, not for images unlike the training data without first measuring it on "
              "them (`headstart eval`), and not as a calibrated probability unless the ECE above is small.", ""]
    lines += ["## How to load it", "", "```bash",
              f"headstart predict {run_name} IMAGES" if kind in ("classifier", "ensemble") else
              f"headstart {'segment' if kind == 'segmenter' else 'detect'} predict {run_name} IMAGES",
              f"headstart export {run_name} --format onnx   # one file for onnxruntime / OpenVINO, parity-checked", "```", "",
              "```python", "from headstart.runfolder import load_run", f"run = load_run({run_name!r})  # run.model, run.classes, run.preprocess",
              "```", ""]
    if exports:
        lines += ["## Exported files", ""]
        for name, e in sorted(exports.items()):
            p = e.get("parity") or {}
            lines.append(f"- `{name}` ({e.get('format')}): input `{(e.get('input') or {}).get('name')}` uint8 (N, 3, S, S) at S = "
                         f"{(e.get('input') or {}).get('size')}, {(e.get('input') or {}).get('resize')}; parity with PyTorch on "
                         f"{p.get('source')}: largest |Δ| {_f(p.get('max_abs_diff_scores'), 6)}, top-1 agreement {_f(p.get('top1_agreement'))}")
        lines.append("")
    return "\n".join(lines)
