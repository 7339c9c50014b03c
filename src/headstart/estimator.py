"""``headstart.fit`` and ``ImageClassifier``: a scikit-learn-style estimator over a run."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from .config import TrainConfig
from .data import ImageSet
from .data.files import gather_image_files
from .errors import DataError
from .predictor import Predictor


def _config_parameters() -> list[inspect.Parameter]:
    """``TrainConfig``'s fields (all but ``data``, which ``fit`` takes) as keyword parameters."""
    return [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default)
        for f in dataclasses.fields(TrainConfig)
        if f.name != "data"
    ]


class ImageClassifier(BaseEstimator):
    """Estimator-style wrapper: ``fit`` trains a run, ``predict``/``predict_proba`` use it.

    Follows scikit-learn's contract: the constructor takes every ``TrainConfig`` field (except
    ``data``, given to ``fit``) as a keyword with the same default, and only stores them, so
    ``get_params``/``set_params``/``sklearn.base.clone`` work; learned state ends in ``_``
    (``classes_``, ``run_dir_``, ``result_``).
    """

    def __init__(self, **params: Any) -> None:
        names = [p.name for p in _config_parameters()]
        unknown = sorted(set(params) - set(names))
        if unknown:
            raise TypeError(f"ImageClassifier got unknown parameters {unknown}; it takes TrainConfig's fields: {names}")
        for p in _config_parameters():
            setattr(self, p.name, params.get(p.name, p.default))

    __init__.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *_config_parameters()]
    )

    def fit(self, data: str, output: str | None = None) -> "ImageClassifier":
        from .api import train

        params = self.get_params()
        if output:
            params["output"] = output
        cfg = TrainConfig(data=str(data), **params)
        self.result_ = train(cfg)
        self.run_dir_ = self.result_.run_dir
        self.predictor_ = Predictor(self.run_dir_, device=cfg.device)
        self.classes_ = list(self.predictor_.classes)
        return self

    @classmethod
    def load(cls, run_dir: str | Path, *, device: str = "auto") -> "ImageClassifier":
        est = cls()
        est.run_dir_ = Path(run_dir)
        est.predictor_ = Predictor(run_dir, device=device)
        est.classes_ = list(est.predictor_.classes)
        return est
    def predict_proba(self, images: Any) -> np.ndarray:
        """Probabilities (N, classes) for file paths, an ImageSet, or a uint8 array
        (N, H, W) / (N, H, W, 3)."""
        if isinstance(images, ImageSet):
            return self.predictor_.proba_imageset(images)
        if isinstance(images, np.ndarray):
            return self.predictor_.proba_imageset(
                ImageSet(images=images.astype(np.uint8), labels=np.full(len(images), -1), classes=[], name="array", skipped=[])
            )
        ok, probs, bad = self.predictor_.proba_files(gather_image_files([images] if isinstance(images, (str, Path)) else images))
        if bad:
            raise DataError("cannot read: " + "; ".join(f"{p}: {r}" for p, r in bad))
        return probs

    def predict(self, images: Any) -> list[str]:
        return [self.classes_[i] for i in self.predict_proba(images).argmax(1)]


def fit_classifier(data: str, **params: Any) -> ImageClassifier:
    """``headstart.fit(data, strategy="partial", output="runs/a", ...)``: train and return the
    fitted estimator."""
    output = params.pop("output", None)
    return ImageClassifier(**params).fit(data, output=output)
