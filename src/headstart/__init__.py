"""headstart: strong image classifiers from little labeled data and little compute.

Public API::

    import headstart
    clf = headstart.fit("fashion-mnist", strategy="partial", labels_per_class=10, output="runs/a")
    clf.predict(["shoe.jpg"])
    headstart.evaluate("runs/a")            # official test split for built-in sets
    headstart.ImageClassifier.load("runs/a").predict_proba(images)
"""

__version__ = "0.1.0"

from .api import ImageClassifier, Predictor, TrainResult, evaluate, predict, train  # noqa: E402
from .api import fit_classifier as fit  # noqa: E402
from .backbones import BACKBONES, create_backbone  # noqa: E402
from .config import TrainConfig  # noqa: E402

__all__ = [
    "BACKBONES",
    "ImageClassifier",
    "Predictor",
    "TrainConfig",
    "TrainResult",
    "create_backbone",
    "evaluate",
    "fit",
    "predict",
    "train",
]
