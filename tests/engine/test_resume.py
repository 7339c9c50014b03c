"""Kill -9 at an arbitrary moment, resume, and end bit for bit where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from headstart.engine import Batches
from headstart.engine.checkpoint import rng_state, set_rng_state


# 40 epochs of 3 steps, interrupted once the checkpoint shows step 13: the run is then far from
# its end, so the signal always lands in a live training loop.
def _cmd(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "headstart", "train", str(data), "-o", str(out), "--strategy", "partial",
        "--freeze-stages", "6", "--image-size", "32", "--epochs", "40", "--val-fraction", "0.3",
        "--checkpoint-every", "2", "--device", "cpu", "--no-progress",
        # RandAugment and CutMix/MixUp draw from the global generators, which the checkpoint must carry
        "--augment", "strong", "--cutmix", "1.0", "--mixup", "0.2", *extra,
    ]


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}


def test_kill_minus_nine_then_resume_matches_uninterrupted(shapes_folder, tmp_path):
    ref = tmp_path / "ref"
    subprocess.run(_cmd(shapes_folder, ref), check=True, env=_env(), capture_output=True)
    assert not (ref / "checkpoint").exists()  # a finished run leaves no checkpoint behind

    run = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(shapes_folder, run), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = run / "checkpoint" / "last.pt"
    deadline = time.time() + 240
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists():
            try:
                state = torch.load(ckpt, weights_only=True)
            except Exception:  # noqa: BLE001 - never happens with atomic writes, but be safe
                continue
            if state["step"] >= 13:
                proc.send_signal(signal.SIGKILL)
                killed_at = state["step"]
                break
        time.sleep(0.02)
    proc.wait()
    assert killed_at is not None, "the run finished before it could be killed; make it longer"
    assert not (run / "model.json").exists()  # killed: no finished run was claimed

    res = subprocess.run(
        [sys.executable, "-m", "headstart", "train", "--resume", str(run), "--no-progress"],
        env=_env(), capture_output=True, text=True,
    )
    assert res.returncode == 0, res.stderr + res.stdout
    a, b = load_file(str(ref / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ma, mb = json.loads((ref / "metrics.json").read_text()), json.loads((run / "metrics.json").read_text())
    assert ma["val"] == mb["val"] and ma["best_epoch"] == mb["best_epoch"]
    assert ma["history"] == mb["history"]
    assert not (run / "checkpoint").exists()

    # Ctrl-C: the run is written with what was learned, marked interrupted, and resumable
    run = tmp_path / "ctrl-c"
    # A suite started in the background by a non-interactive shell inherits SIGINT ignored, and Python then
    # installs no KeyboardInterrupt for it: the child gets the default back, as a terminal's Ctrl-C finds it.
    proc = subprocess.Popen(_cmd(shapes_folder, run), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    ckpt = run / "checkpoint" / "last.pt"
    while proc.poll() is None:
        if ckpt.exists() and torch.load(ckpt, weights_only=True)["step"] >= 13:
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.02)
    out, _ = proc.communicate()
    assert proc.returncode == 0, out
    assert "interrupted" in out
    assert json.loads((run / "metrics.json").read_text())["interrupted"] is True
    assert ckpt.exists()
    # the habit Lightning and timm users bring: the original command again, with --resume added
    res = subprocess.run(_cmd(shapes_folder, run, "--resume", str(run)), env=_env(), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr + res.stdout
    c = load_file(str(run / "model.safetensors"))
    assert all(torch.equal(a[k], c[k]) for k in a)
    assert json.loads((run / "metrics.json").read_text())["interrupted"] is False


def test_resume_refuses_a_finished_run_and_changed_settings(shapes_folder, tmp_path):
    out = tmp_path / "r"
    subprocess.run(_cmd(shapes_folder, out, "--epochs", "1"), check=True, env=_env(), capture_output=True)
    res = subprocess.run([sys.executable, "-m", "headstart", "train", "--resume", str(out)], env=_env(), capture_output=True, text=True)
    assert res.returncode == 2 and "nothing to resume" in res.stdout + res.stderr
    res = subprocess.run(
        [sys.executable, "-m", "headstart", "train", "--resume", str(out), "--lr", "0.1"], env=_env(), capture_output=True, text=True
    )
    assert res.returncode == 2 and "--lr" in res.stdout + res.stderr


def test_resume_accepts_the_runs_own_values_and_names_each_differing_one(tmp_path):
    """Flags equal to the recorded configuration pass; each differing one is named with both
    values (checked on the configuration, without training)."""
    from headstart.cli import _resume_config
    from headstart.config import dump_yaml
    from headstart.errors import HeadstartError

    run = tmp_path / "run"
    run.mkdir()
    requested = {"data": str(tmp_path / "data"), "output": str(run), "epochs": 40, "lr": None, "image_size": 32,
                 "strategy": "partial", "augment": "strong", "progress": True}
    dump_yaml(run / "config.yaml", {"requested": requested})
    same = {"data": str(tmp_path / "data" / "." ), "output": str(run), "epochs": 40, "image_size": 32.0,
            "strategy": "partial", "augment": "strong", "device": "cpu", "progress": False, "overwrite": True}
    cfg = _resume_config(run, set(same), same)
    assert cfg.resume and cfg.epochs == 40 and cfg.device == "cpu" and cfg.progress is False
    differing = {**same, "epochs": 5, "lr": 0.1, "output": str(tmp_path / "elsewhere")}
    with pytest.raises(HeadstartError) as info:
        _resume_config(run, set(differing), differing)
    text = str(info.value)
    assert "--epochs 5 here, 40 in the run" in text and "--lr 0.1 here, None in the run" in text
    assert "--output" in text and "--strategy" not in text and "--device" not in text


def test_batches_resume_mid_epoch_yields_the_rest_of_the_same_order():
    x = torch.arange(40).float().unsqueeze(1)
    b = Batches(x, torch.arange(40), batch_size=6, shuffle=True, seed=1)
    next(iter(b))  # epoch 1
    it = iter(b)
    first = [next(it)[1] for _ in range(3)]
    state = b.epoch_state.clone()
    rest = [y for _, y in it]
    c = Batches(x, torch.arange(40), batch_size=6, shuffle=True, seed=99)
    c.resume_from(state, 3)
    assert [y.tolist() for _, y in c] == [y.tolist() for y in rest]
    assert sorted(torch.cat(first + rest).tolist()) == list(range(40))


def test_rng_state_round_trips():
    import random

    import numpy as np

    s = rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(s)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


class _Crash(Exception):
    pass


def _tiny_fit(tmp_path, *, crash_at: int | None, resume=None, seed: int = 0):
    import numpy as np
    from torch import nn

    from headstart.engine import Context, fit
    from headstart.engine.checkpoint import Checkpointer
    from headstart.finetune.recipe import cosine_schedule
    from headstart.methods import Batch, Setup, Supervised

    torch.manual_seed(seed)
    model = nn.Sequential(nn.Dropout(0.3), nn.Linear(5, 3))
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(80, 5, generator=g), torch.randint(0, 3, (80,), generator=g)
    calls = {"n": 0}

    class Method(Supervised):
        def step(self, batch: Batch):
            calls["n"] += 1
            if crash_at is not None and calls["n"] == crash_at:
                raise _Crash()
            return super().step(batch)

    res = fit(
        Method(model, setup=Setup(num_classes=3, label_smoothing=0.1)),  # the old Supervised() default
        Batches(x, y, batch_size=8, shuffle=True, seed=5, augment=lambda t: t + 0.05 * torch.randn_like(t)),
        Batches(x[:16], y[:16], batch_size=16), epochs=4, optimizer=opt,
        lr_multipliers=cosine_schedule(total_steps=40, warmup_steps=4),
        context=Context(
            device=torch.device("cpu"), prepare=lambda t: t, show_progress=False,
            checkpoint=Checkpointer(tmp_path / "ck", every_steps=3), resume=resume,
        ),
    )
    return model, res, np


def test_resume_from_a_mid_epoch_checkpoint_is_exact(tmp_path):
    from headstart.engine.checkpoint import Checkpointer

    ref_model, ref, _ = _tiny_fit(tmp_path / "a", crash_at=None)
    with pytest.raises(_Crash):
        _tiny_fit(tmp_path / "b", crash_at=17)  # mid-epoch 2; last checkpoint at step 15
    state = Checkpointer(tmp_path / "b" / "ck").load()
    assert (state["step"], state["epoch"], state["position"]) == (15, 1, 5)
    model, res, _ = _tiny_fit(tmp_path / "b", crash_at=None, resume=state, seed=123)  # other init: overwritten
    for a, b in zip(ref_model.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert res.history == ref.history and res.best_epoch == ref.best_epoch


def test_clear_removes_a_half_written_checkpoint(tmp_path):
    from headstart.engine.checkpoint import Checkpointer

    ck = Checkpointer(tmp_path / "ck")
    ck.save({"step": 1})
    (tmp_path / "ck" / ".last.abc.tmp").write_bytes(b"partial")  # what a kill during a save leaves
    assert ck.load() == {"step": 1}
    ck.clear()
    assert not (tmp_path / "ck").exists()
