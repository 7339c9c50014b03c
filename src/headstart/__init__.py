"""headstart: strong image classifiers from little labeled data and little compute.

Public API::

    import headstart
    headstart.advise("fashion-mnist", labels_per_class=10).decision   # what auto will do, and why
    clf = headstart.fit("fashion-mnist", labels_per_class=10, output="runs/a")   # strategy="auto"
    clf.predict(["shoe.jpg"])
    headstart.evaluate("runs/a")            # official test split for built-in sets
    headstart.ImageClassifier.load("runs/a").predict_proba(images)

    from headstart.api_explain import explain, bias, features, report   # looking inside a run
    report("runs/a", output="runs/a/report.html")   # CAMs, errors, bias audit, feature pictures
"""

from .api import (  # noqa: E402
    ImageClassifier,
    Predictor,
    TrainResult,
    advise,
    evaluate,
    predict,
    train,
)
from .api import fit_classifier as fit  # noqa: E402
from .backbones import BACKBONES, create_backbone  # noqa: E402
from .config import TrainConfig  # noqa: E402
from .version import __version__  # noqa: E402

__all__ = [
    "__version__",
    "BACKBONES",
    "ImageClassifier",
    "Predictor",
    "TrainConfig",
    "TrainResult",
    "advise",
    "create_backbone",
    "evaluate",
    "fit",
    "predict",
    "train",
]
