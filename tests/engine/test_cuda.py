"""The GPU path (skipped without CUDA): training and prediction run on the device, and agree
with the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from headstart import ImageClassifier, TrainConfig, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("strategy", ["linear", "partial", "knn"])
def test_train_and_predict_on_cuda(strategy, shapes_folder, shapes_test_folder, tmp_path):
    res = train(
        TrainConfig(data=str(shapes_folder), output=str(tmp_path / strategy), strategy=strategy, image_size=64, epochs=3, device="cuda", progress=False)
    )
    assert res.resolved["device"] == "cuda"
    files = sorted(shapes_test_folder.rglob("*.png"))
    gpu = ImageClassifier.load(res.run_dir, device="cuda").predict_proba(files)
    cpu = ImageClassifier.load(res.run_dir, device="cpu").predict_proba(files)
    # bfloat16 autocast on the GPU vs float32 on the CPU: same decisions, close probabilities
    assert (gpu.argmax(1) == cpu.argmax(1)).mean() >= 0.9
    assert np.abs(gpu - cpu).max() < 0.1
