"""headstart: strong image classifiers from little labeled data and little compute."""

__version__ = "0.1.0"
