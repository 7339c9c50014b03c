"""Consistency training in a process group (2 CPU processes, gloo): the unlabeled stream is
sharded like the labeled one, and rank 0's logged pool figures cover both processes' images."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="this PyTorch build has no torch.distributed")


def test_fixmatch_with_flexmatch_thresholds_trains_in_two_processes(tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "headstart", "train", "digits", "--labels-per-class", "8", "--val-fraction", "0.25", "--image-size", "32",
        "--no-progress", "--device", "cpu", "--strategy", "partial", "--freeze-stages", "6", "--epochs", "2", "--batch-size", "16",
        "--unlabeled", "pool", "--unlabeled-limit", "256", "--method", "fixmatch", "-O", "thresholds=flexmatch", "-O", "threshold=0.5",
        "-o", str(out), "--devices", "2",
    ]
    env = {**os.environ, "HEADSTART_CACHE": "off", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert "2 processes" in proc.stdout + proc.stderr
    for row in m["history"]:
        assert 0.0 <= row["pool_mask"] <= 1.0 and len(row["pool_thresholds"]) == 10
        assert row["pool_coverage"] >= 0.0
    # the epoch draws ~the pool's size in total: 256 / (2 × 16) = 8 steps, each process half of each batch
    assert m["history"][-1]["epoch"] == 2 and m["num_train"] == 60
