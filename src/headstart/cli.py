"""The ``headstart`` command: parse arguments, build a config, call the API, print results."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import sys
import typing
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer
from rich.table import Table

from . import api
from .api_explain import DEFAULT_THRESHOLD
from .config import TrainConfig, load_yaml
from .index import BACKBONES, CAM_METHODS, METHODS, POLICIES, PRETEXTS, RULES, STRATEGIES, TRANSFORMS, option_help

console = api.console  # the one console of every progress bar and message

# Choices shown in --help come from the registries: a new entry appears here by itself.
BACKBONE_HELP = "One of: " + ", ".join(BACKBONES.names()) + " (`headstart models` shows them)."
AUGMENT_HELP = (
    "Augmentation policy: " + " | ".join(POLICIES.names())
    + ", or transforms 'crop:0.6,hflip,rotate:10' (`headstart augment list`; default: none when the body is frozen, else light)."
)
CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _pixel_limit(value: Optional[int]) -> Optional[int]:
    """``--max-image-pixels``: checked, then put where every decoding thread reads it."""
    if value is not None:
        if value <= 0:
            raise typer.BadParameter("must be a positive number of pixels, e.g. 200000000")
        os.environ[api.MAX_PIXELS_ENV] = str(value)
    return value


PIXELS_HELP = (
    CONFIG_FIELDS["max_image_pixels"].metadata["help"]
    + f" Default {api.DEFAULT_MAX_PIXELS:,}, or ${api.MAX_PIXELS_ENV}."
)
PIXELS_OPTION = typer.Option(None, "--max-image-pixels", callback=_pixel_limit, help=PIXELS_HELP)

app = typer.Typer(
    help="headstart: a strong image classifier from a few hundred labeled images, on a laptop.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _json_out(obj) -> None:
    """What ``--json`` prints: the API's result, indented, on stdout (messages go to stderr)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def _names(registry) -> str:
    return "|".join(registry.names())


@app.command()
def models() -> None:
    """List the backbones: parameters per stage, and whether real pretrained weights are present."""
    import warnings

    table = Table(title="headstart backbones", show_lines=True)
    table.add_column("name", no_wrap=True, min_width=18)
    table.add_column("params", no_wrap=True)
    table.add_column("pretrained weights", min_width=12)
    table.add_column("stages (parameters each)", overflow="fold")
    for name in BACKBONES:
        spec = BACKBONES.get(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bb = api.create_backbone(name, num_classes=1000, weights=None)
        rows = bb.stage_parameter_counts()
        total = sum(n for _, n in rows)
        stages = ", ".join(f"{s} {_human(n)}" for s, n in rows[:-1])
        path = spec.default_weights_path()
        weights = ("[green]ImageNet, installed[/green]" if path else "none needed: trains from scratch" if spec.from_scratch
                   else "[yellow]none: pass --weights PATH[/yellow]")
        table.add_row(name, _human(total), weights, stages)
    console.print(table)
    console.print(
        "Stages are the units of freezing: --strategy partial --freeze-stages K freezes the first K.\n"
        "Architectures without installed weights start from random initialisation unless you pass "
        "--weights with a torchvision/timm state dict."
    )


def _human(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


# --- train: one option per TrainConfig field -----------------------------------------------------
# Each option's default and help are the field's (``config.py``); only what a field cannot know
# is added here: the registries' choices, the callback that sets the pixel limit.
_MORE_HELP: dict[str, str] = {
    "strategy": " " + " | ".join(f"{n}: {STRATEGIES.get(n).description}" for n in STRATEGIES) + ".",
    "backbone": " One of: " + ", ".join(BACKBONES.names()) + ".",
    "method": " One of: " + ", ".join(METHODS.names()) + ".",
    "augment": " Policies: " + " | ".join(POLICIES.names()) + ".",
    "max_image_pixels": f" Default {api.DEFAULT_MAX_PIXELS:,}, or ${api.MAX_PIXELS_ENV}.",
}
_CALLBACKS: dict[str, Callable[..., Any]] = {"max_image_pixels": _pixel_limit}
KEY_VALUE = "KEY=VALUE"


def _key_values(items: Optional[List[str]]) -> Optional[dict[str, str]]:
    """``-O a=1 -O b=x`` as ``{"a": "1", "b": "x"}`` (strings: the method's options convert them);
    none given: ``None``. An item without ``=`` (or without a key) is refused."""
    if not items:
        return None
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise typer.BadParameter(f"expected {KEY_VALUE} (e.g. -O threshold=0.95), got {item!r}", param_hint="'-O' / '--option'")
        out[key.strip()] = value
    return out


def _check_key_values(items: Optional[List[str]]) -> Optional[List[str]]:
    _key_values(items)  # refuses a malformed item while the command line is parsed
    return items


def _cli_type(hint: Any) -> tuple[Any, str]:
    """The command-line type of a field's type hint, and its kind: ``flag`` (bool), ``pairs``
    (a mapping, given as repeated KEY=VALUE) or ``value``. A union holding ``str`` (``str | list``,
    ``str | dict``) is a string on the command line; YAML and Python may give the other forms."""
    if hint is bool:
        return bool, "flag"
    args = set(typing.get_args(hint)) or {hint}
    optional = type(None) in args
    args.discard(type(None))
    if args == {dict}:
        return Optional[List[str]], "pairs"
    base = args.pop() if len(args) == 1 else str
    return (Optional[base] if optional else base), "value"


def _flag_name(name: str) -> str:
    """How the command line spells field ``name`` (``--method-options`` is ``--option``)."""
    f = CONFIG_FIELDS.get(name)
    if f is not None and f.metadata.get("cli") == "argument":
        return name.upper()
    flags = f.metadata.get("flags") if f is not None else None
    if flags:
        return flags[0]
    if flags is not None and f.metadata.get("negation"):
        return f.metadata["negation"]
    return "--" + name.replace("_", "-")


def _field_option(f: dataclasses.Field, kind: str, **extra: Any) -> Any:
    """The ``typer.Option`` of TrainConfig field ``f``: the field's default and help."""
    meta = f.metadata
    help_text = meta["help"] + _MORE_HELP.get(f.name, "")
    flags = list(meta.get("flags", ("--" + f.name.replace("_", "-"),)))
    if kind == "flag" and meta.get("negation"):
        # "--feature-cache/--no-feature-cache"; without an on-switch only the off one: " /--no-progress"
        extra.setdefault("show_default", bool(flags))
        flags = [f"{flags[0] if flags else ' '}/{meta['negation']}", *flags[1:]]
    if kind == "pairs":
        extra.update(callback=_check_key_values, metavar=KEY_VALUE)
    if f.name in _CALLBACKS:
        extra["callback"] = _CALLBACKS[f.name]
    return typer.Option(f.default, *flags, help=help_text, **extra)


# Train options that are not one TrainConfig field each.
_TRAIN_ONLY: list[tuple[str, Any, Any]] = [
    ("config", Optional[Path], typer.Option(None, help="YAML file of TrainConfig fields; flags given on the command line win.")),
    ("resume", Optional[Path], typer.Option(
        None, metavar="RUN", help="Continue an interrupted run from its last checkpoint, with the configuration saved in it.",
    )),
    ("devices", int, typer.Option(
        1,
        help="Train in N processes with DistributedDataParallel (one per GPU; on CPUs, gloo): launches torchrun. "
        "--batch-size stays the batch of one optimizer step, shared among the processes.",
    )),
]


def _train_signature() -> inspect.Signature:
    """``train``'s parameters as typer reads them: ``ctx``, the DATA argument, one option per
    TrainConfig field (those with ``cli`` false excepted), then the options of ``_TRAIN_ONLY``."""
    hints = typing.get_type_hints(TrainConfig)
    kw = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
    for f in dataclasses.fields(TrainConfig):
        where = f.metadata.get("cli", True)
        if where == "argument":  # optional here: --resume RUN needs no DATA
            params.append(inspect.Parameter(f.name, kw, annotation=Optional[str], default=typer.Argument(None, help=f.metadata["help"])))
        elif where:
            annotation, kind = _cli_type(hints[f.name])
            params.append(inspect.Parameter(f.name, kw, annotation=annotation, default=_field_option(f, kind)))
    params += [inspect.Parameter(name, kw, annotation=annotation, default=default) for name, annotation, default in _TRAIN_ONLY]
    return inspect.Signature(params, return_annotation=None)


def train(ctx: typer.Context, **kw: Any) -> None:
    """Train a classifier and write a run folder (config.yaml, model.safetensors, model.json, metrics.json, tb/)."""
    devices, config, resume = kw["devices"], kw["config"], kw["resume"]
    if devices > 1 and "WORLD_SIZE" not in os.environ:
        raise typer.Exit(_launch(devices))
    given = {k for k in ctx.params if ctx.get_parameter_source(k).name == "COMMANDLINE"}
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if "devices" in given and devices != world:
        raise api.HeadstartError(f"--devices {devices} disagrees with the {world} process(es) torchrun started; give one or the other")
    values = dict(ctx.params)
    values.pop("config")
    values.pop("devices")
    values["method_options"] = _key_values(values["method_options"])
    asked = given - {"config", "devices"}
    if config is not None:
        base = load_yaml(config)
        base.pop("progress", None)
        for k, v in base.items():
            if k not in given:
                values[k] = v
                asked.add(k)
    if resume is not None:
        cfg = _resume_config(resume, asked, values)
        _summary(api.train(cfg))
        return
    if values["data"] is None:
        raise api.HeadstartError("give the DATA to train on (a folder, a CSV or a built-in set), or --resume RUN")
    values.pop("resume")
    cfg = TrainConfig.from_dict(values)
    result = api.train(cfg)
    _summary(result)


train.__signature__ = _train_signature()  # type: ignore[attr-defined]
# typer also reads typing.get_type_hints(train): the same, concrete, annotations
train.__annotations__ = {**{p.name: p.annotation for p in train.__signature__.parameters.values()}, "return": None}
app.command()(train)


@app.command()
def advise(
    data: str = typer.Argument(..., help="Class-per-folder directory, a path,label CSV, or a built-in set (as for train)."),
    backbone: str = typer.Option(CONFIG_FIELDS["backbone"].default, help=BACKBONE_HELP),
    weights: str = typer.Option(CONFIG_FIELDS["weights"].default, help=CONFIG_FIELDS["weights"].metadata["help"]),
    labels_per_class: Optional[int] = typer.Option(None, help="Advise for K labeled images per class (as train would use them)."),
    seed: int = typer.Option(0, help="Seed for the few-label draw and the probe's folds."),
    image_size: Optional[int] = typer.Option(None, help="Measure at this input side (default: the size fine-tuning would use)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    max_image_pixels: Optional[int] = PIXELS_OPTION,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also write the advice (evidence and decision) as JSON here."),
    as_json: bool = typer.Option(False, "--json", help="Print the advice as JSON instead of tables."),
    feature_cache: bool = typer.Option(True, "--feature-cache/--no-feature-cache", help="Reuse earlier measurements of the same images and weights."),
) -> None:
    """Measure the data against a backbone and say how to fine-tune it, and why: the choice
    `headstart train --strategy auto` makes."""
    adv = api.advise(
        data, backbone=backbone, weights=weights, labels_per_class=labels_per_class, seed=seed, device=device,
        image_size=image_size, use_cache=feature_cache,
    )
    d = adv.to_dict()
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        api.write_json(output, d)
    if as_json:
        _json_out(d)
        return
    _print_advice(adv, data)
    if output is not None:
        console.print(f"written to {output}")


def _print_advice(adv, data: str) -> None:
    size, sig, dec, why = adv.size, adv.signals, adv.decision, adv.reasons
    ev = Table(title=f"evidence: {data} on {adv.backbone} ({'pretrained' if adv.pretrained else 'RANDOM init'}, {adv.image_size}px)")
    ev.add_column("measurement", no_wrap=True)
    ev.add_column("value", overflow="fold")
    ev.add_row(
        "labeled images", f"{size['total']} in {len(size['per_class'])} classes; per class min {size['min_per_class']}, "
        f"median {size['median_per_class']:g}, largest/smallest {size['imbalance']:.1f}"
    )
    ev.add_row("BatchNorm statistics", "n/a (no BatchNorm layers, or random weights)" if sig["bn_kl_mean"] is None
               else f"mean KL {sig['bn_kl_mean']:.2f} from the running statistics → similarity {sig['bn_similarity']:.2f}")
    ev.add_row("pretrained vs random init", "n/a" if sig["transfer_gain"] is None
               else f"best probe {_best(adv.probe):.3f} vs {_best(adv.random_probe):.3f} → gain {sig['transfer_gain']:.2f}")
    ev.add_row("similarity", why["similarity"])
    ev.add_row("measured on", f"{adv.measured_on} images in {adv.seconds:.0f} s")
    console.print(ev)
    st = Table(title="stage-wise linear probe (cross-validated accuracy on pooled features)")
    for col in ("stage", "pretrained", "random init", "BatchNorm KL"):
        st.add_column(col, justify="left" if col == "stage" else "right")
    frozen = dec["freeze_stages"] if dec["strategy"] == "partial" else None
    for i, name in enumerate(adv.stage_names):
        cells = [_fmt(adv.probe, i), _fmt(adv.random_probe, i), _fmt(adv.bn_kl, i, digits=2)]
        mark = "  ❄" if frozen is not None and i < frozen else ""
        st.add_row(f"{i + 1} {name}{mark}", *cells)
    console.print(st)
    de = Table(title="decision")
    de.add_column("choice", no_wrap=True)
    de.add_column("value", no_wrap=True)
    de.add_column("because", overflow="fold")
    de.add_row("size", "", why["size"])
    de.add_row("strategy", dec["strategy"], why["strategy"])
    de.add_row("freeze stages", f"{dec['freeze_stages']} of {len(adv.stage_names)}", why["freeze_stages"])
    de.add_row("body lr", f"×{dec['backbone_lr_mult']:g} of the head's", why["backbone_lr_mult"])
    de.add_row("schedule", f"lr {dec['lr']:g}, {dec['epochs']} epochs, batch {dec['batch_size']}", why["schedule"])
    de.add_row("augmentation", f"{dec['augment']} ({dec['augment_strength']:.2f})", why["augment"])
    console.print(de)
    alts = ", ".join(c["strategy"] + (f"({c['freeze_stages']})" if c["strategy"] == "partial" else "") for c in adv.candidates)
    console.print(f"train with it: [bold]headstart train {data} --strategy auto[/bold]   (add --search to try {alts} on validation)")


def _best(curve) -> float:
    return max(v for v in curve if v is not None)


def _fmt(curve, i: int, digits: int = 3) -> str:
    if curve is None or curve[i] is None:
        return "—"
    return f"{curve[i]:.{digits}f}"


def _launch(processes: int) -> int:
    """Re-run this ``train`` command under torchrun with ``processes`` workers on this machine;
    its exit status. CPU workers share the cores (OMP_NUM_THREADS = cores / workers unless set)."""
    import subprocess

    argv = sys.argv[sys.argv.index("train") :] if "train" in sys.argv else None
    if argv is None:
        raise api.HeadstartError("--devices works from the command line; from Python, start the script with torchrun")
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", "-m", "headstart", *argv]
    console.print(f"[dim]launching {processes} processes: {' '.join(cmd[2:])}[/dim]")
    return subprocess.call(cmd, env=env)


# May differ on --resume: where it runs and how it shows progress, not what it computes.
_RESUME_FREE = frozenset({"resume", "device", "progress", "overwrite"})
_PATH_KEYS = frozenset({"data", "output", "val", "unlabeled", "weights", "teacher", "init_from", "backbone_from"})


def _same_value(key: str, given, saved) -> bool:
    """Whether a flag repeats the run's recorded value (numbers by value, paths resolved)."""
    if given == saved:
        return True
    if isinstance(given, (int, float)) and isinstance(saved, (int, float)) and not isinstance(given, bool):
        return float(given) == float(saved)
    if key in _PATH_KEYS and given is not None and saved is not None:
        def paths(v) -> list[Path]:  # --teacher may name several runs, comma-separated
            return [Path(p).expanduser().resolve() for p in (str(v).split(",") if key == "teacher" else [str(v)])]

        return paths(given) == paths(saved)
    return False


def _resume_config(run: Path, asked: set, values: dict):
    """The saved configuration of ``run``. Flags repeated from the original command are accepted
    when their values equal the recorded ones; only device and progress may differ (anything
    else would not be the same run), and each differing flag is named with both values."""
    saved = run / "config.yaml"
    route = run / "selftrain.json"  # train --unlabeled stopped while its teacher trained: the request itself
    if not saved.is_file() and route.is_file():
        requested = dict(json.loads(route.read_text())["requested"])
    elif not saved.is_file():
        raise api.RunError(f"{saved} is missing: {run} is not a run folder that can be resumed")
    else:
        requested = dict(load_yaml(saved)["requested"])
    recorded = {**requested, "output": str(run)}
    differing = []
    for key in sorted(asked - _RESUME_FREE):
        if key not in recorded:
            continue
        if not _same_value(key, values[key], recorded[key]):
            flag = _flag_name(key)
            differing.append(f"{flag} {values[key]!r} here, {recorded[key]!r} in the run")
    if differing:
        raise api.HeadstartError(
            f"--resume continues {run} as it was configured, but: {'; '.join(differing)}. Drop these flags (or give "
            "the run's values), or start a new run with another --output"
        )
    requested.update(output=str(run), resume=True, overwrite=True, progress=values["progress"])
    if "device" in asked:
        requested["device"] = values["device"]
    return TrainConfig.from_dict(requested)


def _summary(result) -> None:
    hist = result.history
    val = f"{result.val_accuracy:.4f}" if result.val_accuracy is not None else "n/a (no validation split)"
    console.print()
    console.rule("[bold]run finished" + (" (interrupted — saved what was learned)" if result.interrupted else ""))
    console.print(f"  validation accuracy  {val}")
    if hist:
        console.print(f"  best epoch           {result.best_epoch} of {hist[-1]['epoch']}")
    console.print(f"  wall time            {result.seconds:.1f} s")
    console.print(f"  run folder           {result.run_dir}")
    console.print(f"  next                 headstart eval {result.run_dir}   ·   tensorboard --logdir {result.run_dir}/tb")


@app.command("eval")
def eval_(
    run: Path = typer.Argument(..., help="A run folder written by `headstart train`."),
    data: Optional[str] = typer.Argument(
        None,
        help="Labeled data (folder, CSV, built-in set) or a split of the run's data: test | val | train. "
        "Default: the official test split for built-in sets, the training folder otherwise.",
    ),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    max_image_pixels: Optional[int] = PIXELS_OPTION,
    on_bad_image: str = typer.Option("skip", help="skip | error"),
    tta: bool = typer.Option(False, "--tta", help="Average over label-safe test-time views; report accuracy with and without."),
    tta_views: Optional[str] = typer.Option(None, help="Views for --tta (default 'hflip,crop:0.85'; the image itself is always one)."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """Accuracy, per-class precision/recall and the confusion matrix of a run on labeled data."""
    m = api.evaluate(run, data, device=device, on_bad_image=on_bad_image, tta=tta, tta_views=tta_views)
    if as_json:
        _json_out(m)
        return
    console.print(f"[bold]accuracy {m['accuracy']:.4f}[/bold] on {m['num_images']} images of {m['data']}")
    if m.get("tta"):
        t = m["tta"]
        console.print(
            f"  test-time augmentation over {len(t['views'])} views ({', '.join(t['views'])}): {t['accuracy']:.4f} "
            f"vs {t['accuracy_without_tta']:.4f} without ({(t['accuracy'] - t['accuracy_without_tta']) * 100:+.1f} points); "
            "each view alone: " + ", ".join(f"{k} {v:.4f}" for k, v in t["accuracy_per_view"].items())
        )
        for note in t["left_out"]:
            console.print(f"  [dim]{note}[/dim]")
    if m.get("caution"):
        console.print(f"[yellow]note: {m['caution']}[/yellow]")
    table = Table(title="per class")
    for col in ("class", "precision", "recall", "f1", "support"):
        table.add_column(col, justify="right" if col != "class" else "left")
    for row in m["per_class"]:
        table.add_row(row["class"], f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}", str(row["support"]))
    console.print(table)
    classes = [r["class"] for r in m["per_class"]]
    cm = Table(title="confusion matrix (rows: true, columns: predicted)")
    cm.add_column("")
    for i, _ in enumerate(classes):
        cm.add_column(str(i), justify="right")
    for i, (name, row) in enumerate(zip(classes, m["confusion_matrix"])):
        cm.add_row(f"{i} {name}", *[str(v) for v in row])
    console.print(cm)
    if m["most_confused"]:
        console.print("most confused: " + "; ".join(f"{p['true']} → {p['predicted']} ({p['count']})" for p in m["most_confused"]))
    console.print(f"written to {m['written_to']}")


# `headstart ensemble`: its own options, then every training option (for --members/--backbones).
_ENSEMBLE_ONLY: list[tuple[str, Any, Any]] = [
    ("rule", str, typer.Option("auto", help="auto (chosen on held-out images, with the reason) | " + " | ".join(RULES.names()) + "; "
                               "weighted is Caruana's greedy selection, accuracy weights by held-out accuracy, stack a logistic layer.")),
    ("test", Optional[str], typer.Option(None, help="Labeled test images scoring each member, each rule and the ensemble "
                                         "(default: the official test split of a built-in set).")),
    ("members", Optional[int], typer.Option(None, help="Train N members of the recipe (the DATA and training options given) "
                                            "with seeds --seed, --seed+1..., into OUTPUT/members/, then combine them.")),
    ("backbones", Optional[str], typer.Option(None, help="Train one member per architecture, comma-separated (with --members: N each).")),
    ("calibrate", bool, typer.Option(True, "--calibrate/--no-calibrate",
                                     help="Temperature-scale the combined probabilities, fitted on the held-out images (kept only "
                                          "when it lowers their NLL out of fold; never changes a prediction).")),
    ("as_json", bool, typer.Option(False, "--json", help="Print the metrics as JSON.")),
]


def _ensemble_signature() -> inspect.Signature:
    """``ensemble``'s parameters: the runs (or the DATA), its own options, then every training
    option as ``train`` has them (the recipe of --members/--backbones), --output defaulting to
    runs/ensemble."""
    kw = inspect.Parameter.KEYWORD_ONLY
    params = [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        inspect.Parameter("inputs", kw, annotation=Optional[List[str]], default=typer.Argument(
            None, metavar="RUN... | DATA", help="Finished runs to combine; with --members/--backbones, the data to train them on.")),
    ]
    params += _recipe_params(_ENSEMBLE_ONLY, (), typer.Option("runs/ensemble", "--output", "-o",
                                                              help="The ensemble's run folder (members: OUTPUT/members/)."))
    return inspect.Signature(params, return_annotation=None)


def _recipe_params(own: list[tuple[str, Any, Any]], skip: tuple[str, ...], output: Any) -> list[inspect.Parameter]:
    """A command's own options, then ``train``'s options (less ``skip`` and what only ``train``
    has) as the recipe of what it trains, ``--output`` with the command's own default."""
    kw = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter(name, kw, annotation=a, default=d) for name, a, d in own]
    for p in _train_signature().parameters.values():
        if p.name in ("ctx", "data", "config", "resume", "devices", *skip):
            continue
        params.append(p.replace(default=output) if p.name == "output" else p)
    return params


def ensemble(ctx: typer.Context, **kw: Any) -> None:
    """Combine finished runs (any architectures, sizes, strategies) into one ensemble run, or train its members first."""
    inputs = list(kw.pop("inputs") or [])
    rule, test, members, backbones, calibrate, as_json = (kw.pop(k) for k in ("rule", "test", "members", "backbones", "calibrate", "as_json"))
    names = [b.strip() for b in backbones.split(",") if b.strip()] if backbones else None
    recipe = None
    if members is not None or names:
        if len(inputs) != 1:
            raise api.ConfigError("--members/--backbones train the members on one DATA: give it (a folder, a CSV or a built-in set)")
        kw["method_options"] = _key_values(kw["method_options"])
        recipe = TrainConfig.from_dict({**kw, "data": inputs[0], "output": str(kw["output"])})
        inputs = []
    m = api.ensemble(inputs, output=kw["output"], rule=rule, val=kw["val"], test=test, members=members, backbones=names, recipe=recipe,
                     device=kw["device"], overwrite=kw["overwrite"], on_bad_image=kw["on_bad_image"], calibrate=calibrate)
    if as_json:
        _json_out(m)
        return
    _print_ensemble(m)


def _print_ensemble(m: dict[str, Any]) -> None:
    console.print(f"[bold]ensemble[/bold] {m['run_dir']}: rule [bold]{m['rule']}[/bold] — {m['why']}")
    if m.get("held_out_rules"):
        t = Table(title=f"rules on {m['held_out']['images']} held-out images ({m['held_out']['source']}; fitted rules out of fold)")
        for col in ("rule", "accuracy", "NLL", "ECE"):
            t.add_column(col)
        for name, r in m["held_out_rules"].items():
            t.add_row(name, *([f"{r['accuracy']:.4f}", f"{r['nll']:.3f}", f"{r['ece']:.3f}"] if r.get("available") else [r["why"], "", ""]))
        console.print(t)
    console.print(f"calibration: {m['calibration']['why']}")
    test = m.get("test")
    if not test:
        console.print("[dim]no test images: give --test DATA to score the members and the ensemble[/dim]")
        return
    t = Table(title=f"test: {test['num_images']} images of {test['data']}")
    for col in ("model", "backbone", "size", "strategy", "accuracy", "NLL", "ECE", "img/s"):
        t.add_column(col)
    for r in test["members"]:
        t.add_row(r["run"], r["backbone"], str(r["image_size"]), f"{r['strategy']} ({r['head']})", f"{r['accuracy']:.4f}",
                  f"{r['nll']:.3f}", f"{r['ece']:.3f}", f"{r['images_per_second']:.0f}")
    e = test["ensemble"]
    t.add_row(f"[bold]ensemble ({m['rule']})[/bold]", "", "", "", f"[bold]{e['accuracy']:.4f}[/bold]", f"{e['nll']:.3f}", f"{e['ece']:.3f}",
              f"{e['images_per_second']:.0f}")
    console.print(t)
    if m["calibration"]["temperature"] != 1.0:
        u = test["uncalibrated"]
        console.print(f"temperature {m['calibration']['temperature']:.2f} on test: ECE {u['ece']:.3f} → {e['ece']:.3f}, "
                      f"NLL {u['nll']:.3f} → {e['nll']:.3f}")
    console.print("each rule on test: " + ", ".join(f"{k} {v['accuracy']:.4f}" for k, v in test["rules"].items()))
    d, v = test["diversity"], test["versus_best_member"]
    console.print(f"gain over the best member: {test['gain_over_best_member'] * 100:+.2f} points (McNemar z = {v['z']:.1f}"
                  f"{', beyond noise' if v['beyond_noise'] else ', within noise'}); mean pairwise disagreement {d['mean_disagreement']:.3f}, "
                  f"oracle accuracy {d['oracle_accuracy']:.4f}"
                  + (f", error correlation {d['error_correlation']:.2f}" if d["error_correlation"] is not None else ""))
    console.print(f"next: headstart eval {m['run_dir']}   ·   headstart predict {m['run_dir']} IMAGES   ·   headstart report {m['run_dir']}")


ensemble.__signature__ = _ensemble_signature()  # type: ignore[attr-defined]
ensemble.__annotations__ = {**{p.name: p.annotation for p in ensemble.__signature__.parameters.values()}, "return": None}
app.command()(ensemble)


_DISTILL_ONLY: list[tuple[str, Any, Any]] = [
    ("student", str, typer.Option("efficientnet_lite0", help="The student's architecture: " + BACKBONE_HELP)),
    ("temperature", float, typer.Option(4.0, "--temperature", "-T", help="T: teacher and student softened as softmax(logits / T).")),
    ("alpha", float, typer.Option(0.9, help="Weight of the teacher's soft targets; 1 − alpha weighs the labels' cross-entropy.")),
    ("cached_teacher", bool, typer.Option(False, "--cached-teacher", help="Teach from one teacher pass over the plain "
                                          "unlabeled and labeled images instead of on every drawn view (faster, less consistent).")),
    ("view", str, typer.Option("weak", help="How teacher and student see the unlabeled images: plain | weak | strong.")),
    ("test", Optional[str], typer.Option(None, help="Labeled test images for the student-vs-teacher table (default: a built-in set's test split).")),
    ("as_json", bool, typer.Option(False, "--json", help="Print the comparison as JSON.")),
]


def _distill_signature() -> inspect.Signature:
    kw = inspect.Parameter.KEYWORD_ONLY
    params = [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        inspect.Parameter("teacher_run", kw, annotation=Path, default=typer.Argument(
            ..., metavar="TEACHER_RUN", help="A finished run (an ensemble included); the student trains on its labeled images.")),
    ]
    params += _recipe_params(_DISTILL_ONLY, ("backbone", "teacher", "teachers", "labels_per_class", "split_seed", "method"),
                             typer.Option("runs/distilled", "--output", "-o", help="The student's run folder."))
    return inspect.Signature(params, return_annotation=None)


def distill(ctx: typer.Context, **kw: Any) -> None:
    """Knowledge distillation: a student learns a finished run's (or an ensemble's) softened outputs on its labels, and the unlabeled images."""
    teacher = kw.pop("teacher_run")
    own = {k: kw.pop(k) for k, _, _ in _DISTILL_ONLY}
    kw["method_options"] = _key_values(kw["method_options"])
    unlabeled = kw.pop("unlabeled")
    recipe = {k: v for k, v in kw.items() if k in CONFIG_FIELDS}
    out = api.distill(teacher, student=own["student"], temperature=own["temperature"], alpha=own["alpha"], unlabeled=unlabeled,
                      cached_teacher=own["cached_teacher"], view=own["view"], test=own["test"], **recipe)
    if own["as_json"]:
        _json_out(out)
        return
    t = Table(title=f"student {out['run_dir']} beside its teacher")
    for col in ("", "backbone", "size", "test accuracy", "parameters", "file", "img/s (batch 64)", "ms/img (batch 1)"):
        t.add_column(col)
    for name in ("teacher", "student"):
        r = out[name]
        t.add_row(name, r["backbone"], str(r["image_size"]), "" if r["test_accuracy"] is None else f"{r['test_accuracy']:.4f}",
                  f"{r['parameters'] / 1e6:.2f}M", f"{r['file_bytes'] / 1e6:.1f} MB", f"{r.get('images_per_second', 0):.0f}",
                  f"{r.get('latency_ms_batch1', 0):.1f}")
    console.print(t)
    if "speedup" in out:
        console.print(f"student {out['speedup']:.1f}× the teacher's img/s" + (f"; {out['gap_to_teacher'] * 100:+.2f} points of accuracy" if "gap_to_teacher" in out else ""))


distill.__signature__ = _distill_signature()  # type: ignore[attr-defined]
distill.__annotations__ = {**{p.name: p.annotation for p in distill.__signature__.parameters.values()}, "return": None}
app.command()(distill)


@app.command()
def selftrain(
    run: Path = typer.Argument(..., help="The first teacher: a finished run folder written by `headstart train`."),
    unlabeled: str = typer.Option(..., help="Unlabeled images: a folder, or 'pool' (the rest of the split --labels-per-class left)."),
    rounds: int = typer.Option(1, help="Students to train, each taught by the one before."),
    student: Optional[str] = typer.Option(None, help="The students' architecture (default: the teacher's; equal or larger is usual)."),
    output: Path = typer.Option(Path("runs/selftrain"), "--output", "-o", help="Folder of the rounds (round-1, round-2, ... and rounds.md)."),
    option: Optional[List[str]] = typer.Option(
        None, "--option", "-O", callback=_check_key_values,
        help="An option of --method pseudolabel for the students, key=value (default view=strong targets=soft threshold=0.3 align=true).",
    ),
    unlabeled_limit: Optional[int] = typer.Option(None, help="Use at most N unlabeled images per round (a seeded draw)."),
    epochs: Optional[int] = typer.Option(None, help="Student epochs (each draws about the pool's size of unlabeled images)."),
    drop_path_rate: float = typer.Option(0.2, help="The students' stochastic depth (the last block's drop probability)."),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda (default: the teacher's)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the rounds in --output from the first unfinished one."),
) -> None:
    """Noisy Student: the teacher labels the unlabeled images (soft targets), a noised student learns from them and the labels, and becomes the next teacher."""
    overrides: dict[str, Any] = {}
    if unlabeled_limit is not None:
        overrides["unlabeled_limit"] = unlabeled_limit
    if epochs is not None:
        overrides["epochs"] = epochs
    rows = api.selftrain(
        str(run), unlabeled=unlabeled, rounds=rounds, output=output, student=student, options=_key_values(option),
        drop_path_rate=drop_path_rate, resume=resume, device=device, **overrides,
    )
    table = Table(title=f"self-training rounds ({output / 'rounds.md'})")
    for col in ("round", "run", "val acc", "test acc", "teacher's pseudo-labels right", "pool used", "seconds"):
        table.add_column(col)

    def f(v, pct=False):
        return "" if v is None else (f"{v:.1%}" if pct else f"{v:.4f}" if isinstance(v, float) else str(v))

    for r in rows:
        table.add_row(str(r["round"]), r["run"], f(r.get("val_acc")), f(r.get("test_acc")), f(r.get("teacher_pseudo_acc"), True),
                      f(r.get("coverage"), True), f(r.get("seconds")))
    console.print(table)


@app.command()
def pretrain(
    data: str = typer.Argument(..., help="Images to learn from: any folder (every image under it; labels ignored) or a built-in set "
                                         "(its training split, labels unused)."),
    method: str = typer.Option("rotation", help="The pretext task: " + " | ".join(PRETEXTS.names()) + " (`headstart list pretext`)."),
    output: Path = typer.Option(Path("runs/body"), "--output", "-o", help="The body's run folder (kind body)."),
    backbone: str = typer.Option("efficientnet_lite0", help="A registered architecture (`headstart models`)."),
    start: str = typer.Option("imagenet", "--from", help="imagenet (continue from the installed ImageNet weights) | scratch."),
    freeze_stages: Optional[int] = typer.Option(None, help="Stages kept frozen (default: the first half from imagenet, none from scratch)."),
    image_size: Optional[int] = typer.Option(None, help="Input side in pixels (default: what `headstart train` would use on these images)."),
    epochs: Optional[int] = typer.Option(None, help="Passes over the images (default 10, or what --time-budget affords)."),
    batch_size: int = typer.Option(64, help="Images per step."),
    lr: Optional[float] = typer.Option(None, help="Learning rate of the task head and of stages from scratch (default 2e-3; ImageNet stages a tenth)."),
    time_budget: Optional[float] = typer.Option(None, help="Minutes: the passes are planned from a measured step to fit, and training stops in time."),
    option: Optional[List[str]] = typer.Option(None, "--option", "-O", callback=_check_key_values,
                                               help="An option of the pretext task, key=value (`headstart list pretext`)."),
    max_images: Optional[int] = typer.Option(None, help="Learn from a seeded subset of N images."),
    seed: int = typer.Option(0, help="Random seed."),
    resume: bool = typer.Option(False, "--resume", help="Continue the interrupted pretraining in --output (bit for bit on a CPU)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a finished body in --output."),
    checkpoint_every: int = typer.Option(0, help="Also checkpoint every N steps (epoch ends always are)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """A body trained by a pretext task on unlabeled images; then `train --backbone-from` it, or `probe` it."""
    m = api.pretrain(data, method=method, output=output, backbone=backbone, start=start, freeze_stages=freeze_stages, image_size=image_size,
                     epochs=epochs, batch_size=batch_size, lr=lr, time_budget=time_budget, method_options=_key_values(option),
                     max_images=max_images, seed=seed, resume=resume, overwrite=overwrite, checkpoint_every=checkpoint_every, device=device)
    if as_json:
        _json_out(m)
        return
    best = next((r for r in m["history"] if r["epoch"] == m["best_epoch"]), m["history"][-1] if m["history"] else {})
    scores = ", ".join(f"{k.replace('_', ' ')} {v:.4f}" for k, v in best.items() if k.startswith("val_"))
    console.print(f"[bold]body[/bold] {m['run_dir']}: {m['method']} on {m['images']} images, {len(m['history'])} epoch(s) in "
                  f"{m['seconds']['train']:.0f} s; kept epoch {m['best_epoch']}" + (f" ({scores})" if scores else ""))
    for why in m["reasons"].values():
        console.print(f"  [dim]{why}[/dim]")
    console.print(f"next: headstart probe {m['run_dir']} imagenet:{backbone} DATA   ·   headstart train DATA --backbone-from {m['run_dir']}")


@app.command()
def probe(
    inputs: List[str] = typer.Argument(..., metavar="BODY... DATA", help="Bodies (body folders from `headstart pretrain`, imagenet:ARCH, "
                                                                        "random:ARCH), then the labeled DATA (a folder or a built-in set)."),
    labels_per_class: str = typer.Option("1,10,100", help="Comma-separated labeled images per class to probe with."),
    seeds: str = typer.Option("0", help="Comma-separated seeds of the labeled draws (the same draws for every body)."),
    stages: str = typer.Option("last", help="last | all | comma-separated stage names (`headstart models`)."),
    test: Optional[str] = typer.Option(None, help="Labeled test images (default: the built-in set's test split)."),
    image_size: Optional[int] = typer.Option(None, help="Input side for every body (default: the first body folder's)."),
    knn_k: int = typer.Option(20, help="Neighbours of the weighted kNN."),
    knn_temperature: float = typer.Option(0.07, help="Temperature of the kNN's exp(similarity / T) weights."),
    output: Path = typer.Option(Path("runs/probe"), "--output", "-o", help="Where probe.json, probe.md and probe.png go."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Linear probe and kNN of frozen bodies on the same labels, seeds and test images: which body learned the better features."""
    if len(inputs) < 2:
        raise api.ConfigError("give one or more bodies and then the labeled DATA, e.g. `headstart probe runs/body imagenet:efficientnet_lite0 fashion-mnist`")

    def ints(text: str, flag: str) -> list[int]:
        try:
            return [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise api.ConfigError(f"{flag} {text!r}: give comma-separated whole numbers, e.g. 1,10,100") from None

    chosen: Any = stages if stages in ("last", "all") else [s.strip() for s in stages.split(",") if s.strip()]
    out = api.probe(inputs[:-1], inputs[-1], labels_per_class=ints(labels_per_class, "--labels-per-class"), seeds=ints(seeds, "--seeds"),
                    stages=chosen, test=test, image_size=image_size, knn_k=knn_k, knn_temperature=knn_temperature, output=output, device=device)
    if as_json:
        _json_out(out)
        return
    table = Table(title=f"probe: {out['num_test']} test images, {out['image_size']} px (linear: logistic regression C=1; kNN k={knn_k}, T={knn_temperature})")
    for col in ("body", "stage", "labels/class", "linear", "kNN", "seeds"):
        table.add_column(col)
    for r in out["summary"]:
        table.add_row(r["body"], r["stage"], str(r["labels_per_class"]), f"{r['linear_mean']:.4f} ± {r['linear_sd']:.4f}",
                      f"{r['knn_mean']:.4f} ± {r['knn_sd']:.4f}", str(r["seeds"]))
    console.print(table)
    console.print(f"written: {output / 'probe.md'}, {output / 'probe.png'}")


@app.command()
def predict(
    run: Path = typer.Argument(..., help="A run folder written by `headstart train`."),
    images: List[str] = typer.Argument(..., help="Image files and/or folders (searched recursively)."),
    top_k: int = typer.Option(3, "--top-k", "-k", help="How many classes to show per image."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    max_image_pixels: Optional[int] = PIXELS_OPTION,
    tta: bool = typer.Option(False, "--tta", help="Average over the run's label-safe test-time views."),
    tta_views: Optional[str] = typer.Option(None, help="Views for --tta (default 'hflip,crop:0.85')."),
    engine: str = typer.Option("torch", help="torch | onnxruntime | openvino (the latter two run RUN/model.onnx, exported when missing)."),
    int8: bool = typer.Option(False, "--int8", help="With --engine onnxruntime|openvino: the INT8 graph (`headstart export RUN --int8`; measured, never the default)."),
    batch_size: int = typer.Option(64, help="Images per engine call (--engine onnxruntime|openvino); files are decoded one batch ahead in a thread."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Top-k classes with probabilities for each image."""
    out = api.predict(run, images, top_k=top_k, device=device, tta=tta, tta_views=tta_views, engine=engine, int8=int8, batch_size=batch_size)
    if as_json:
        _json_out(out)
        return
    table = Table()
    table.add_column("image", overflow="fold")
    for i in range(top_k):
        table.add_column(f"#{i + 1}")
    for row in out["predictions"]:
        table.add_row(row["path"], *[f"{t['class']} {t['probability']:.3f}" for t in row["top"]])
    console.print(table)
    for s in out["skipped"]:
        console.print(f"[yellow]skipped[/yellow] {s['path']}: {s['reason']}")


CAM_HELP = "CAM method: " + " | ".join(CAM_METHODS.names()) + " (grad-cam library; scorecam is slow on a CPU: one forward per channel)."


@app.command()
def explain(
    run: Path = typer.Argument(..., help="A run folder written by `headstart train`."),
    images: List[str] = typer.Argument(..., help="Image files and/or folders (searched recursively)."),
    method: str = typer.Option("gradcam", help=CAM_HELP),
    target: Optional[str] = typer.Option(None, "--class", help="Explain this class (name or number) for every image; default: each image's prediction."),
    boxes: bool = typer.Option(False, "--boxes", help="Draw the CAM's box (red) and the ground truth's (green, with --gt)."),
    gt: Optional[Path] = typer.Option(None, "--gt", help="CSV of ground truth: path,x0,y0,x1,y1 (original pixels) or path,mask; reports IoU."),
    threshold: float = typer.Option(DEFAULT_THRESHOLD, help="CAM threshold for boxes and masks, as a fraction of each map's maximum."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Folder for the overlays (default RUN/explain)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    max_image_pixels: Optional[int] = PIXELS_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Heatmaps of what the model looked at, one PNG per image (image | CAM overlay)."""
    from . import api_explain

    out = api_explain.explain(run, images, method=method, target=target, boxes=boxes, ground_truth=gt, threshold=threshold, output=output, device=device)
    if as_json:
        _json_out(out)
        return
    console.print(f"{out['method']} on layer [bold]{out['layer']}[/bold] ({out['layer_reason']})")
    table = Table()
    for col in ("image", "predicted", "p", "explained", "box (pixels)") + (("IoU",) if out.get("ground_truth") else ()):
        table.add_column(col, overflow="fold")
    for r in out["images"]:
        box = "—" if r["box"] is None else ",".join(f"{v:.0f}" for v in r["box"])
        extra = (f"{r['iou']:.2f}" if "iou" in r else "—",) if out.get("ground_truth") else ()
        table.add_row(Path(r["path"]).name, r["predicted"], f"{r['probability']:.2f}", r["explained_class"], box, *extra)
    console.print(table)
    g = out.get("ground_truth")
    if g and g["mean_iou"] is not None:
        console.print(f"mean IoU {g['mean_iou']:.3f}, CorLoc (IoU ≥ 0.5) {g['corloc']:.3f} over {g['images_with_boxes']} images with boxes")
    for b in out["skipped"]:
        console.print(f"[yellow]skipped[/yellow] {b['path']}: {b['reason']}")
    console.print(f"overlays in {out['output']} (summary: explain.json)")


@app.command()
def bias(
    run: Path = typer.Argument(..., help="A run folder written by `headstart train`."),
    data: Optional[str] = typer.Argument(None, help="Labeled data, as for `eval` (default: the test split / the training folder)."),
    gt: Optional[Path] = typer.Option(None, "--gt", help="CSV of object boxes or masks: adds inside-vs-outside shares and localization IoU."),
    limit: int = typer.Option(500, help="At most this many images (the same share of every class)."),
    method: str = typer.Option("gradcam", help=CAM_HELP),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    max_image_pixels: Optional[int] = PIXELS_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the audit as JSON."),
) -> None:
    """Where the evidence lies per class (centre, border, inside the object) and which classes look at the wrong thing."""
    from . import api_explain

    out = api_explain.bias(run, data, ground_truth=gt, limit=limit, method=method, device=device)
    if as_json:
        _json_out({k: v for k, v in out.items() if k != "per_image"})
        return
    r = out["regions"]
    console.print(f"{out['images']} images of {out['data']}, {out['method']} on {out['layer']}; an even map puts "
                  f"{r['even_map_centre']:.0%} of its energy in the centre and {r['even_map_border']:.0%} on the border")
    table = Table()
    for col in ("class", "images", "accuracy", "centre", "border", "border ÷ others", "inside", "flags"):
        table.add_column(col)
    f = lambda v: "—" if v is None else f"{v:.2f}"  # noqa: E731
    for row in out["per_class"]:
        table.add_row(row["class"], str(row["images"]), f(row.get("accuracy")), f(row["centre"]), f(row["border"]),
                      f(row.get("border_vs_other_classes")), f(row["inside"]), ", ".join(row["flags"]))
    console.print(table)
    for flag in out["flags"]:
        console.print(f"[yellow]flag[/yellow] {flag['message']}; e.g. {', '.join(map(str, flag['example_paths'][:3]))}")
    loc = out.get("localization")
    if loc:
        best = max(loc["by_threshold"], key=lambda t: t["mean_iou"] or 0)
        console.print(f"CAM boxes vs ground truth: mean IoU {best['mean_iou']:.3f} at threshold {best['threshold']} "
                      f"(centred-box baseline {loc['centred_box_baseline_iou']:.3f})")
    console.print(f"written to {out['written_to']}")


@app.command()
def features(
    run: Path = typer.Argument(..., help="A run folder written by `headstart train`."),
    data: Optional[str] = typer.Argument(None, help="Labeled data, as for `eval`."),
    layer: Optional[str] = typer.Option(None, help="Stage (name or number) for the activating patches; default: the deepest whose field is ≤ 2/3 of the image."),
    channel: Optional[int] = typer.Option(None, help="Channel of that stage; default: the most active one."),
    top_k: int = typer.Option(9, "--top-k", help="How many patches."),
    limit: int = typer.Option(500, help="At most this many images (the same share of every class)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Folder for the pictures (default RUN/features)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    max_image_pixels: Optional[int] = PIXELS_OPTION,
) -> None:
    """First-layer filters, PCA and t-SNE of the penultimate features, and maximally activating patches."""
    from . import api_explain

    out = api_explain.features(run, data, layer=layer, channel=channel, top_k=top_k, limit=limit, output=output, device=device)
    for key, path in out["files"].items():
        console.print(f"{key}: {path}")


@app.command()
def report(
    run: Path = typer.Argument(..., help="A run folder written by `headstart train`."),
    data: Optional[str] = typer.Argument(None, help="Labeled data, as for `eval` (default: the test split / the training folder)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="The HTML file (default RUN/report.html)."),
    limit: int = typer.Option(500, help="At most this many images analysed (the same share of every class)."),
    method: str = typer.Option("gradcam", help=CAM_HELP),
    gt: Optional[Path] = typer.Option(None, "--gt", help="CSV of object boxes or masks: adds the localization section."),
    layer: Optional[str] = typer.Option(None, help="Stage for the activating patches."),
    channel: Optional[int] = typer.Option(None, help="Channel for the activating patches."),
    tensorboard: bool = typer.Option(True, help="Also write embeddings and CAM images to RUN/tb/explain."),
    screenshot: Optional[Path] = typer.Option(None, help="Also render the page in headless Chromium and save a full-page PNG."),
    compare: Optional[Path] = typer.Option(None, help="Segmenter runs: another segmenter (e.g. the other --upsample) scored beside it."),
    classifier: Optional[Path] = typer.Option(None, help="Segmenter and detector runs: a classifier run on the same images; its Grad-CAM masks' IoU "
                                                         "(or boxes' CorLoc) beside the segmenter's (detector's)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    max_image_pixels: Optional[int] = PIXELS_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """One self-contained HTML page: config, advice, curves, errors, CAMs, bias audit, feature pictures (segmenters: IoU, masks; detectors: AP, boxes)."""
    from . import api_explain

    out = api_explain.report(run, data, output=output, limit=limit, method=method, ground_truth=gt, layer=layer, channel=channel,
                             tensorboard=tensorboard, device=device, compare=compare, classifier=classifier)
    if screenshot is not None:
        seen = api_explain.render_check(out["report"], screenshot=screenshot)
        broken = [i["alt"] for i in seen["images"] if not i["width"]]
        out["rendered"] = {"sections": len(seen["sections"]), "images": len(seen["images"]), "broken_images": broken, "screenshot": str(screenshot)}
    if as_json:
        _json_out(out)
        return
    console.print(f"[bold]{out['report']}[/bold] ({out['bytes'] / 1e6:.1f} MB): {', '.join(out['sections'])}")
    if out.get("kind") == "detector":
        console.print(f"mAP@0.5 {_num(out['map_50'])} · mAP@0.5:0.95 {_num(out['map'])} · CorLoc {_num(out['corloc'])} on {out['images']} images")
        return
    if out.get("kind") == "segmenter":
        console.print(f"mIoU {out['miou']:.4f} · pixel accuracy {out['pixel_accuracy']:.4f} · boundary F {out['boundary_f']:.4f} on {out['images']} images")
        if out.get("rendered"):
            r = out["rendered"]
            console.print(f"rendered in Chromium: {r['sections']} sections, {r['images']} images, {len(r['broken_images'])} broken")
        return
    how = "an ensemble" if out["method"] == "ensemble" else f"{out['method']} on {out['layer']}"
    console.print(f"accuracy {out['accuracy']:.3f} on {out['images']} images; {how}; {out['seconds']['total']:.0f} s")
    for flag in out["bias_flags"]:
        console.print(f"[yellow]bias flag[/yellow] {flag['message']}")
    if out.get("rendered"):
        r = out["rendered"]
        console.print(f"rendered in Chromium: {r['sections']} sections, {r['images']} images, {len(r['broken_images'])} broken; screenshot {r['screenshot']}")
    if out.get("tensorboard"):
        console.print(f"TensorBoard: tensorboard --logdir {Path(out['tensorboard']).parent}")


segment_app = typer.Typer(help="Semantic segmentation on a pretrained body: train, eval, predict (runs of kind segmenter).", no_args_is_help=True)
app.add_typer(segment_app, name="segment")


@segment_app.command("train")
def segment_train(
    data: str = typer.Argument(..., help="DATA/images + DATA/masks (same stems; masks are PNGs of class indices, 255 = ignore; class names "
                                         "in DATA/classes.txt), or a folder of PNGs with transparency (the alpha is the mask)."),
    output: Path = typer.Option(Path("runs/seg"), "--output", "-o", help="The run folder (kind segmenter)."),
    val: Optional[str] = typer.Option(None, help="Validation data in the same form (default: 15 % of DATA held out, seeded)."),
    backbone: str = typer.Option("efficientnet_lite0", help="The encoder: a registered architecture (`headstart models`)."),
    upsample: str = typer.Option("bilinear", help="How the decoder doubles resolution: bilinear (interpolate + 3x3 conv) | transposed "
                                                  "(learned 4x4 stride-2 transposed conv)."),
    bilinear_init: bool = typer.Option(False, "--bilinear-init", help="Start the transposed convs as exact bilinear upsampling."),
    freeze_stages: Optional[str] = typer.Option(None, help="Encoder stages kept frozen: a number, or auto (measured by a per-pixel probe "
                                                       "of each stage); default: the first half."),
    image_size: Optional[int] = typer.Option(None, help="Training side in pixels (default: the images' median side, rounded up to 32)."),
    epochs: Optional[int] = typer.Option(None, help="Passes over the images (default 30, or what --time-budget affords)."),
    batch_size: int = typer.Option(16, help="Images per step."),
    lr: Optional[float] = typer.Option(None, help="Decoder learning rate (default 2e-3)."),
    encoder_lr_mult: float = typer.Option(0.1, help="The encoder's trainable stages learn at this multiple of --lr."),
    time_budget: Optional[float] = typer.Option(None, help="Minutes: passes planned from a measured step to fit; training stops in time."),
    dice_weight: float = typer.Option(1.0, help="Weight of the Dice loss beside the cross-entropy (0: cross-entropy alone)."),
    flip: bool = typer.Option(True, "--flip/--no-flip", help="Random left-right flips (of image and mask together)."),
    min_scale: float = typer.Option(0.5, help="Smallest random crop, as a share of the image area (1: no crops)."),
    max_images: Optional[int] = typer.Option(None, help="Use a seeded subset of N images of DATA (then held out from as usual)."),
    seed: int = typer.Option(0, help="Random seed (the held-out split, the draws)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the interrupted training in --output (bit for bit on a CPU)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a finished run in --output."),
    checkpoint_every: int = typer.Option(0, help="Also checkpoint every N steps (epoch ends always are)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """Train an encoder-decoder segmenter (U-Net skips over the backbone's stages)."""
    m = api.segment_train(data, output=output, val=val, backbone=backbone, upsample=upsample, bilinear_init=bilinear_init,
                          freeze_stages=freeze_stages, image_size=image_size, epochs=epochs, batch_size=batch_size, lr=lr,
                          encoder_lr_mult=encoder_lr_mult, time_budget=time_budget, dice_weight=dice_weight, flip=flip, min_scale=min_scale,
                          max_images=max_images, seed=seed, resume=resume, overwrite=overwrite, checkpoint_every=checkpoint_every, device=device)
    if as_json:
        _json_out(m)
        return
    v = m.get("val")
    tail = f"; validation mIoU {v['miou']:.4f}, pixel accuracy {v['pixel_accuracy']:.4f}, boundary F {v['boundary_f']:.4f}" if v else ""
    console.print(f"[bold]segmenter[/bold] {m['run_dir']}: {m['images']} images, {len(m['history'])} epoch(s) in {m['seconds']['train']:.0f} s, "
                  f"kept epoch {m['best_epoch']}{tail}")
    for why in m["reasons"].values():
        console.print(f"  [dim]{why}[/dim]")
    console.print(f"next: headstart segment eval {m['run_dir']} DATA   ·   headstart segment predict {m['run_dir']} IMAGES -o masks")


def _print_seg_scores(r: dict) -> None:
    t = Table(title=f"{r.get('data', '')}: {r['images']} images")
    t.add_column("class")
    t.add_column("IoU", justify="right")
    for name, v in r["per_class_iou"].items():
        t.add_row(name, "-" if v is None else f"{v:.4f}")
    console.print(t)
    console.print(f"mIoU {r['miou']:.4f} · pixel accuracy {r['pixel_accuracy']:.4f} · boundary F {r['boundary_f']:.4f}")


@segment_app.command("eval")
def segment_eval(
    run: Path = typer.Argument(..., help="A run folder written by `headstart segment train`."),
    data: str = typer.Argument(..., help="Images and masks in the form the run was trained on, with the run's classes."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    as_json: bool = typer.Option(False, "--json", help="Print the scores as JSON."),
) -> None:
    """mIoU, per-class IoU, pixel accuracy and boundary F-score at the images' original sizes (also RUN/eval.json)."""
    r = api.segment_eval(run, data, device=device)
    if as_json:
        _json_out({k: v for k, v in r.items() if k != "per_image_miou"})
        return
    _print_seg_scores(r)


@segment_app.command("predict")
def segment_predict(
    run: Path = typer.Argument(..., help="A run folder written by `headstart segment train`."),
    inputs: List[str] = typer.Argument(..., help="Image files or folders."),
    output: Path = typer.Option(Path("masks"), "--output", "-o", help="Where NAME.png (mask) and NAME-overlay.png go."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    engine: str = typer.Option("torch", help="torch | onnxruntime | openvino: the exported graph (RUN/model.onnx, exported once when missing) in a CPU runtime."),
    int8: bool = typer.Option(False, "--int8", help="With --engine onnxruntime|openvino: the INT8 graph (`headstart export RUN --int8`; measured, never the default)."),
    as_json: bool = typer.Option(False, "--json", help="Print one row per image as JSON."),
) -> None:
    """Masks at each image's original size: a palette PNG of class indices and an overlay per image."""
    rows = api.segment_predict(run, inputs, output=output, device=device, engine=engine, int8=int8)
    if as_json:
        _json_out(rows)
        return
    ok = [r for r in rows if "mask" in r]
    console.print(f"{len(ok)} mask(s) written to {output}" + (f"; {len(rows) - len(ok)} file(s) skipped" if len(rows) > len(ok) else ""))


@app.command("export")
def export_cmd(
    run: Path = typer.Argument(..., help="A run folder: a classifier (any strategy or head; distilled students too), an ensemble or a segmenter."),
    format: str = typer.Option("onnx", "--format", help="onnx (run by onnxruntime, OpenVINO, ...) | pt2 (torch.export; TorchScript is deprecated)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="The file to write (default RUN/model.FORMAT); OUTPUT.json and the model card go beside it."),
    check: Optional[str] = typer.Option(None, help="Images (files or a folder) for the parity check (default: the run's own training images)."),
    parity_images: int = typer.Option(64, help="Images in the parity check (and the INT8 calibration)."),
    int8: bool = typer.Option(False, "--int8", help="Also write STEM.int8.onnx: static per-channel INT8 (onnxruntime), its agreement and speed measured."),
    as_json: bool = typer.Option(False, "--json", help="Print what OUTPUT.json holds."),
) -> None:
    """Export a run with a built-in parity check: uint8 pixels in (normalisation inside the graph), dynamic batch."""
    info = api.export(run, format=format, output=output, check=check, parity_images=parity_images, int8=int8)
    if as_json:
        _json_out(info)
        return
    p = info["parity"]
    console.print(f"[bold]{info['path']}[/bold] ({info['bytes'] / 1e6:.1f} MB, {info['format']}): input {info['input']['name']} uint8 "
                  f"(N, 3, {info['input']['size']}, {info['input']['size']}), outputs {', '.join(info['outputs'])}")
    console.print(f"parity on {p['source']}: largest |Δ| {p['max_abs_diff_scores']:.2e} (allowed {p['tolerance']:g}), top-1 agreement "
                  f"{p['top1_agreement']:.4f} ({p['runtime']})")
    console.print(f"  [dim]resize beside the graph: {info['input']['resize']}[/dim]")


@app.command("serve")
def serve_cmd(
    source: Path = typer.Argument(..., help="A classifier or ensemble run folder (its model.onnx, exported when missing), or a model.onnx from `headstart export`."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, help="Port to listen on."),
    workers: int = typer.Option(1, help="Worker processes (each loads the model; the engine's threads are divided among them)."),
    engine: str = typer.Option("onnxruntime", help="onnxruntime | openvino"),
    int8: bool = typer.Option(False, "--int8", help="Serve the INT8 graph (`headstart export RUN --int8`; measured, never the default)."),
    max_upload_mb: float = typer.Option(10.0, help="The largest request body / file accepted, in MiB (larger: 413)."),
) -> None:
    """An HTTP prediction service: POST /predict (multipart or raw image bytes) → top-k JSON; GET /health, /model, / (upload page)."""
    console.print(f"[bold]headstart serve[/bold] {source} on http://{host}:{port} ({engine}{' INT8' if int8 else ''}, {workers} worker(s))")
    api.serve(source, host=host, port=port, workers=workers, engine=engine, int8=int8, max_bytes=int(max_upload_mb * 1024 * 1024))


detect_app = typer.Typer(help="Object detection on a pretrained body: train, eval, predict (runs of kind detector).", no_args_is_help=True)
app.add_typer(detect_app, name="detect")


@detect_app.command("train")
def detect_train(
    data: str = typer.Argument(..., help="A boxes CSV (path,x0,y0,x1,y1,label; pixels of the upright image; one row per box) or a folder "
                                         "holding boxes.csv."),
    output: Path = typer.Option(Path("runs/det"), "--output", "-o", help="The run folder (kind detector)."),
    val: Optional[str] = typer.Option(None, help="A validation boxes CSV (default: 15 % of the images held out, seeded)."),
    backbone: str = typer.Option("efficientnet_lite0", help="The body: a registered architecture (`headstart models`)."),
    detector: str = typer.Option("fasterrcnn", help="fasterrcnn (proposals, then RoI heads) | fcos (anchor-free, one stage)."),
    freeze_stages: Optional[str] = typer.Option(None, help="Body stages kept frozen: a number, or auto (measured by a per-pixel probe of "
                                                       "each stage, classes from the boxes); default: the first half."),
    image_size: Optional[int] = typer.Option(None, help="Training side in pixels (default: the images' median side, rounded up to 32, ≤ 320)."),
    epochs: Optional[int] = typer.Option(None, help="Passes over the images (default 24, or what --time-budget affords)."),
    batch_size: int = typer.Option(16, help="Images per step."),
    lr: Optional[float] = typer.Option(None, help="Learning rate of the pyramid and heads (default 1e-3)."),
    backbone_lr_mult: Optional[float] = typer.Option(None, help="The body's trainable stages learn at this multiple of --lr (default 0.1; 1 without pretrained weights)."),
    time_budget: Optional[float] = typer.Option(None, help="Minutes: passes planned from a measured step to fit; training stops in time."),
    flip: bool = typer.Option(True, "--flip/--no-flip", help="Random left-right flips (boxes mirrored with the image)."),
    max_images: Optional[int] = typer.Option(None, help="Use a seeded subset of N images (then held out from as usual)."),
    seed: int = typer.Option(0, help="Random seed (the held-out split, the draws)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the interrupted training in --output (bit for bit on a CPU)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a finished run in --output."),
    checkpoint_every: int = typer.Option(0, help="Also checkpoint every N steps (epoch ends always are)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """Train a detector (torchvision's Faster R-CNN or FCOS over a feature pyramid of the backbone's stages)."""
    m = api.detect_train(data, output=output, val=val, backbone=backbone, detector=detector, freeze_stages=freeze_stages, image_size=image_size,
                         epochs=epochs, batch_size=batch_size, lr=lr, backbone_lr_mult=backbone_lr_mult, time_budget=time_budget, flip=flip,
                         max_images=max_images, seed=seed, resume=resume, overwrite=overwrite, checkpoint_every=checkpoint_every, device=device)
    if as_json:
        _json_out(m)
        return
    v = m.get("val")
    tail = (f"; validation mAP@0.5 {_num(v['map_50'])}, mAP@0.5:0.95 {_num(v['map'])}, CorLoc {_num(v['corloc'])}" if v else "")
    console.print(f"[bold]detector[/bold] {m['run_dir']}: {m['images']} images, {m['boxes']} boxes, {len(m['history'])} epoch(s) in "
                  f"{m['seconds']['train']:.0f} s, kept epoch {m['best_epoch']}{tail}")
    for why in m["reasons"].values():
        console.print(f"  [dim]{why}[/dim]")
    console.print(f"next: headstart detect eval {m['run_dir']} BOXES.csv   ·   headstart detect predict {m['run_dir']} IMAGES -o boxes")


def _num(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.4f}"


@detect_app.command("eval")
def detect_eval(
    run: Path = typer.Argument(..., help="A run folder written by `headstart detect train`."),
    data: str = typer.Argument(..., help="A boxes CSV (or a folder holding boxes.csv) with the run's classes."),
    classifier: Optional[Path] = typer.Option(None, help="A classifier run on the same classes: its Grad-CAM boxes scored beside the detector's."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    as_json: bool = typer.Option(False, "--json", help="Print the scores as JSON."),
) -> None:
    """COCO-style mAP (torchmetrics over pycocotools), matches at IoU 0.5 and CorLoc at the images' own sizes (also RUN/eval.json)."""
    r = api.detect_eval(run, data, classifier=classifier, device=device)
    if as_json:
        _json_out({k: v for k, v in r.items() if k != "paths"})
        return
    t = Table(title=f"{r.get('data', '')}: {r['images']} images, {r['boxes']} boxes")
    t.add_column("class")
    t.add_column("AP@0.5:0.95", justify="right")
    for name, v in r["per_class_ap50_95"].items():
        t.add_row(name, _num(v))
    console.print(t)
    mt = r["matches"]
    console.print(f"mAP@0.5 {_num(r['map_50'])} · mAP@0.5:0.95 {_num(r['map'])} · at score ≥ {mt['score']}: precision {mt['precision']:.4f}, "
                  f"recall {mt['recall']:.4f} · CorLoc {_num(r['corloc'])} (top box's mean IoU {_num(r['top_box_mean_iou'])})")
    if r.get("cam"):
        c = r["cam"]
        console.print(f"Grad-CAM boxes of {c['run']} on the same {c['images']} images: CorLoc {_num(c['corloc'])}, mean IoU {_num(c['mean_iou'])}")


@detect_app.command("predict")
def detect_predict(
    run: Path = typer.Argument(..., help="A run folder written by `headstart detect train`."),
    inputs: List[str] = typer.Argument(..., help="Image files or folders."),
    output: Path = typer.Option(Path("boxes"), "--output", "-o", help="Where NAME-boxes.png and boxes.csv go."),
    min_score: float = typer.Option(0.5, help="Draw and list detections scoring at least this."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    engine: str = typer.Option("torch", help="torch | onnxruntime | openvino: the exported graph (RUN/model.onnx, FP32, exported once when missing) in a CPU runtime."),
    as_json: bool = typer.Option(False, "--json", help="Print one row per image as JSON."),
) -> None:
    """Boxes on each image, drawn (NAME-boxes.png) and listed (boxes.csv: path,x0,y0,x1,y1,label,score)."""
    rows = api.detect_predict(run, inputs, output=output, min_score=min_score, device=device, engine=engine)
    if as_json:
        _json_out(rows)
        return
    ok = [r for r in rows if "drawn" in r]
    n = sum(len(r["boxes"]) for r in ok)
    console.print(f"{n} box(es) on {len(ok)} image(s) written to {output}" + (f"; {len(rows) - len(ok)} file(s) skipped" if len(rows) > len(ok) else ""))


augment_app = typer.Typer(help="Augmentation: the transform families, a preview sheet, the label-safety audit.", no_args_is_help=True)
app.add_typer(augment_app, name="augment")


@augment_app.command("list")
def augment_list() -> None:
    """The named policies and the transform families (with the magnitude each takes)."""
    pol = Table(title="policies (--augment NAME)")
    pol.add_column("name")
    pol.add_column("transforms")
    pol.add_column("what it does", overflow="fold")
    for name in POLICIES:
        entry = POLICIES.get(name)
        pol.add_row(name, ",".join(s.describe() for s in api.policy_steps(name)[1]) or "-", entry.doc)
    console.print(pol)
    fam = Table(title="transform families (--augment / --invariances 'family:magnitude,...')")
    for col in ("family", "magnitude", "default", "range", "audited at", "what it does"):
        fam.add_column(col, overflow="fold")
    for name in TRANSFORMS:
        f = TRANSFORMS.get(name)
        fam.add_row(name, f.unit, f"{f.default:g}", f"{f.low:g}..{f.high:g}", ", ".join(f"{v:g}" for v in f.audit_levels) or "-", f.doc)
    console.print(fam)
    console.print("--invariances also takes 'tone' (RandAugment's posterize/solarize/equalize/autocontrast/sharpness).")


@augment_app.command("preview")
def augment_preview(
    data: str = typer.Argument(..., help="Class-per-folder directory, a CSV or a built-in set (as for train)."),
    output: Path = typer.Option(Path("augment-preview.png"), "--output", "-o", help="PNG file to write."),
    policy: str = typer.Option("standard", "--policy", "-p", help=AUGMENT_HELP),
    strength: float = typer.Option(1.0, help="Scale every magnitude of the policy (1 = as written)."),
    invariances: Optional[str] = typer.Option(None, help="Declared label-keeping transforms, as for train."),
    rows: int = typer.Option(8, help="Images shown (one per class first)."),
    copies: int = typer.Option(6, help="Augmented draws per image."),
    image_size: Optional[int] = typer.Option(None, help="Decode image files at this side (default 128; arrays stay native)."),
    seed: int = typer.Option(0, help="Seed of the image choice and the draws."),
    max_image_pixels: Optional[int] = PIXELS_OPTION,
) -> None:
    """Write a contact sheet: originals beside augmented versions, as training would draw them."""
    path = api.augment_preview(
        data, output, policy=policy, strength=strength, invariances=invariances, rows=rows, copies=copies,
        image_size=image_size, seed=seed,
    )
    console.print(f"written to {path}")


@augment_app.command("audit")
def augment_audit(
    run: Path = typer.Argument(..., help="A run folder written by `headstart train`."),
    data: Optional[str] = typer.Argument(
        None, help="Labeled images to audit on (as for eval). Default: the test split of a built-in set, else the run's validation split."
    ),
    per_class: int = typer.Option(100, help="Images per class audited (a random sample)."),
    families: Optional[str] = typer.Option(None, help="Comma-separated families to audit (default: all with an exact form)."),
    max_drop: Optional[float] = typer.Option(None, help="Flag a transform when a class loses this much accuracy under it (default 0.2)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    max_image_pixels: Optional[int] = PIXELS_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the audit as JSON."),
) -> None:
    """Apply each transform at a few strengths to labeled images and report, per class, how
    often the model's prediction changes and to which class; flag the transforms that change labels."""
    res = api.augment_audit(
        run, data, per_class=per_class, families=[f.strip() for f in families.split(",")] if families else None,
        max_drop=max_drop, device=device,
    )
    if as_json:
        _json_out(res)
        return
    table = Table(title=f"label-safety audit: {res['num_images']} images of {res['data']}, accuracy {res['accuracy']:.3f}")
    for col in ("transform", "accuracy", "changed", "label change", "erased", "fragile"):
        table.add_column(col, overflow="fold")
    for row in res["rows"]:
        def cells(kind: str) -> str:
            return ", ".join(
                f"{c['class']}→{c['flips_to']} ({c['accuracy']:.2f}→{c['accuracy_transformed']:.2f})"
                for c in row["per_class"] if c["kind"] == kind
            ) or "-"

        table.add_row(
            f"{row['family']}:{row['magnitude']:g}", f"{row['accuracy_transformed']:.3f}", f"{row['flip_rate']:.0%}",
            cells("label change"), cells("erased"), ", ".join(row["fragile_classes"]) or "-",
        )
    console.print(table)
    for fam, s in res["families"].items():
        if s["flagged_at"] is not None:
            safe = "unsafe even at its mildest audited strength" if s["safe_up_to"] is None else f"safe up to {fam}:{s['safe_up_to']:g}"
            console.print(f"  [bold red]flagged[/bold red] {fam} from {fam}:{s['flagged_at']:g} ({safe})")
    console.print(f"  supported invariances: --invariances '{res['recommended_invariances']}'")
    if res.get("run_policy_flagged"):
        console.print(f"  [bold red]this run trained with flagged transforms:[/bold red] {', '.join(res['run_policy_flagged'])}")
    console.print(f"written to {res['written_to']}")


list_app = typer.Typer(help="The registered choices: training methods (with their options), strategies, backbones.", no_args_is_help=True)
app.add_typer(list_app, name="list")


def _first_line(doc: Optional[str]) -> str:
    lines = (doc or "").strip().splitlines()
    return lines[0].strip() if lines else ""


@list_app.command("methods")
def list_methods() -> None:
    """The training methods (--method NAME) and each one's options (-O key=value), with defaults."""
    table = Table(title="training methods (--method NAME -O key=value)", show_lines=True)
    for col in ("method", "what it does", "option", "default", "help"):
        table.add_column(col, overflow="fold", no_wrap=col in ("method", "option"))
    for name in METHODS:
        cls = METHODS.get(name)
        rows = option_help(cls.Options)
        what = _first_line(cls.__doc__)
        if not rows:
            table.add_row(name, what, "no options", "", "")
        for i, (option, default, text) in enumerate(rows):
            table.add_row(name if i == 0 else "", what if i == 0 else "", option, repr(default), text)
    console.print(table)


@list_app.command("strategies")
def list_strategies() -> None:
    """The transfer strategies (--strategy NAME)."""
    table = Table(title="strategies (--strategy NAME)")
    table.add_column("strategy", no_wrap=True)
    table.add_column("what it does", overflow="fold")
    table.add_row("auto", "measure the data and choose one of the others (`headstart advise` shows the choice and why)")
    for name in STRATEGIES:
        table.add_row(name, getattr(STRATEGIES.get(name), "description", ""))
    console.print(table)


@list_app.command("pretext")
def list_pretext() -> None:
    """The pretext tasks (headstart pretrain --method NAME), with their options."""
    table = Table(title="pretext tasks (headstart pretrain --method NAME -O key=value)")
    for col in ("task", "what it learns", "options"):
        table.add_column(col, overflow="fold", no_wrap=col == "task")
    for name in PRETEXTS:
        cls = PRETEXTS.get(name)
        doc = (cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        table.add_row(name, doc, "; ".join(f"{n}={d!r}: {h}" for n, d, h in option_help(cls.Options)) or "none")
    console.print(table)


@list_app.command("rules")
def list_rules() -> None:
    """The ensemble rules (headstart ensemble --rule NAME)."""
    table = Table(title="ensemble rules (headstart ensemble --rule NAME)")
    for col in ("rule", "fitted on held-out images", "what it does"):
        table.add_column(col, overflow="fold", no_wrap=col == "rule")
    table.add_row("auto", "", "choose among the others on held-out images (fitted rules out of fold); the soft vote unless another beats it beyond noise")
    for name in RULES:
        rule = RULES.get(name)
        table.add_row(name, "yes" if rule.fitted else "no", rule.summary)
    console.print(table)


@list_app.command("backbones")
def list_backbones() -> None:
    """The backbones (--backbone NAME); `headstart models` adds their stages and weights."""
    table = Table(title="backbones (--backbone NAME)")
    for col in ("backbone", "family", "what it is"):
        table.add_column(col, overflow="fold", no_wrap=col == "backbone")
    for name in BACKBONES:
        spec = BACKBONES.get(name)
        table.add_row(name, getattr(spec, "family", ""), getattr(spec, "description", ""))
    console.print(table)


@app.command()
def demo(
    output: str = typer.Option("runs/demo", "--output", "-o", help="Where the demo's runs go."),
    labels_per_class: int = typer.Option(10, help="Labeled images per class for the demo."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
) -> None:
    """Run the main job end to end on real data that installs offline, and say where to look."""
    api.run_demo(output=output, labels_per_class=labels_per_class, device=device)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        app()
    except api.HeadstartError as exc:
        rank = int(os.environ.get("RANK", "0"))
        console.quiet = False  # errors are shown by every process of a group, marked with its rank
        console.print(f"{f'rank {rank}: ' if rank else ''}[bold red]error:[/bold red] {exc}")
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow] before training began or after it ended; nothing new was written")
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
