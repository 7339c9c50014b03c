"""--init-from RUN: a run starts from another run's whole network, exactly, and refuses a run
of another backbone or other classes."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from headstart import TrainConfig, train
from headstart.api import _model
from headstart.errors import ConfigError


def test_a_run_starts_from_another_runs_exact_weights_and_refuses_a_mismatch(shapes_folder, tmp_path):
    first = train(TrainConfig(data=str(shapes_folder), output=str(tmp_path / "a"), strategy="partial", freeze_stages=6, epochs=1,
                              image_size=32, device="cpu", progress=False))
    saved = load_file(str(first.run_dir / "model.safetensors"))
    model = _model(TrainConfig(data="x", init_from=str(first.run_dir)), 3)
    own = model.state_dict()
    assert own.keys() == saved.keys() and all(torch.equal(own[k], saved[k]) for k in saved)
    fresh = _model(TrainConfig(data="x"), 3).state_dict()
    assert not torch.equal(fresh["head.weight"], saved["head.weight"])  # the head is the run's, not a new one
    with pytest.raises(ConfigError, match="has 3 classes, this data 5"):
        _model(TrainConfig(data="x", init_from=str(first.run_dir)), 5)
    with pytest.raises(ConfigError, match="efficientnet_lite0 run; this run's --backbone is efficientnet_lite1"):
        _model(TrainConfig(data="x", init_from=str(first.run_dir), backbone="efficientnet_lite1", weights="none"), 3)
    with pytest.raises(ConfigError, match="not a finished run folder"):
        _model(TrainConfig(data="x", init_from=str(tmp_path)), 3)
