"""``ImageClassifier`` follows scikit-learn's estimator contract over ``TrainConfig``'s fields."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
from sklearn.base import clone

from headstart import ImageClassifier, TrainConfig


def test_the_signature_is_the_config_fields_with_their_defaults():
    params = inspect.signature(ImageClassifier).parameters
    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.name != "data"}
    assert {n: p.default for n, p in params.items()} == fields
    assert ImageClassifier().get_params() == fields


def test_get_params_set_params_and_clone():
    est = ImageClassifier(strategy="linear", epochs=3, method_options={"ema_decay": "0.9"})
    params = est.get_params()
    assert (params["strategy"], params["epochs"], params["lr"]) == ("linear", 3, None)
    twin = clone(est)
    assert twin is not est and twin.get_params() == params
    est.set_params(epochs=5)
    assert est.epochs == 5 and twin.epochs == 3
    with pytest.raises(TypeError, match="unknown parameters.*'epoch'"):
        ImageClassifier(epoch=3)


def test_fit_trains_with_the_params(tmp_path):
    est = ImageClassifier(strategy="knn", labels_per_class=3, image_size=24, device="cpu", progress=False)
    est.fit("digits", output=str(tmp_path / "r"))
    assert est.classes_ == [str(i) for i in range(10)]
    assert est.result_.resolved["strategy"] == "knn" and est.result_.resolved["labels_per_class"] == 3
