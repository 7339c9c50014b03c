"""Label propagation over frozen features: the cheap feature-space route to pseudo-labels.

What it is: Zhou et al. (2004), "Learning with Local and Global Consistency" — label
*spreading* over a k-nearest-neighbour graph of frozen backbone features. Every labeled and
unlabeled image is a node; class mass starts on the labeled nodes and is iterated as
``F <- alpha * S @ F + (1 - alpha) * Y`` with ``S = D^-1/2 W D^-1/2`` the normalised graph,
so a pool image takes the classes of the labeled images it is connected to through dense
regions of feature space. The work is done by scikit-learn's
``sklearn.semi_supervised.LabelSpreading(kernel="knn")``; this module only prepares the
features (L2 rows, optional randomized PCA, L2 again), checks inputs, and maps the result
onto a fixed ``num_classes`` column order.

Note on the graph, as scikit-learn builds it (read from its source, 1.9): ``W`` is the
*directed* kNN connectivity graph (row ``i`` marks the ``k`` nearest points of ``i``, the
point itself among them; it is not symmetrised), the degree is the in-degree (column sums)
without the self loop, and the diagonal of ``S`` is zeroed. So ``k`` counts the point itself
and each node has ``k - 1`` real neighbours. Mass reaches ``i`` only from ``i``'s own
neighbours, so a labeled image that is in no other image's neighbour list (an outlier, an
"anti-hub") spreads nothing; pool rows no label reaches come back uniform and are counted in
``info["unreached"]``.

When it helps: features whose neighbourhoods already follow the classes — images of a domain
near the backbone's pretraining (photos for an ImageNet backbone), where cluster structure in
feature space is class structure. Then a few labels per class reach most of the pool in
seconds to tens of seconds, with no training.

When it hurts: a domain far from pretraining, where nearest neighbours in feature space mix
classes; spreading then carries each label into the wrong clusters and is *worse* than a
classifier on the labels alone. This project measured it: on Fashion-MNIST with frozen
ImageNet EfficientNet-Lite0 features, propagation scored 0.686 against 0.741 for logistic
regression on the labels alone. The caller must compare against that baseline (e.g. on held
out labels) before trusting the output as pseudo-labels.

Cost: the brute-force kNN graph dominates (``O(N^2 d)``), so ``pca_dims`` is the lever;
``n_jobs`` barely matters (scikit-learn's brute kNN already uses every core through OpenMP).
Measured on 60,000 x 1280 features, 2 shared cores (``benchmarks/results/propagate.md``):
about 16 s at ``pca_dims=64``, 22 s at 128 (the default), 215 s without PCA.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Propagation", "propagate"]


@dataclass
class Propagation:
    """The result of :func:`propagate`.

    ``probs`` is (P, C) float32, each row a class distribution (sums to 1) for one pool image,
    columns in class-index order. ``info`` records what was done: k, alpha, pca_dims (the
    number of components used, None when PCA was skipped), n_labeled, n_pool, num_classes,
    classes_labeled, iterations, converged, unreached (pool rows that got no mass and were
    set uniform)."""

    probs: np.ndarray
    seconds: float
    info: dict = field(default_factory=dict)


def _as_numpy(x, name: str) -> np.ndarray:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency of the project
        pass
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    return x


def _features(x, name: str) -> np.ndarray:
    x = _as_numpy(x, name)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (rows, features), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real numbers, got dtype {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _l2(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return x / norms


def propagate(
    labeled,
    labels,
    pool,
    num_classes: int,
    *,
    k: int = 10,
    alpha: float = 0.2,
    pca_dims: int | None = 128,
    max_iter: int = 30,
    seed: int = 0,
) -> Propagation:
    """Spread ``labels`` from ``labeled`` (L, D) features to ``pool`` (P, D) features.

    Rows are L2-normalised; if ``pca_dims`` and D > ``pca_dims``, a randomized PCA
    (``random_state=seed``) fitted on labeled + pool projects them and they are normalised
    again; then ``LabelSpreading(kernel="knn", n_neighbors=k, alpha=alpha,
    max_iter=max_iter)`` is fitted on labeled + pool (pool labels -1). Returns the pool rows of
    its ``label_distributions_`` as (P, num_classes) probabilities; a class without labels
    keeps its (zero) column, and a pool row that no label reached is uniform.
    Raises ValueError on inconsistent inputs."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.semi_supervised import LabelSpreading

    t0 = time.perf_counter()
    labeled = _features(labeled, "labeled")
    pool = _features(pool, "pool")
    labels = _as_numpy(labels, "labels")

    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    num_classes = int(num_classes)
    if labeled.shape[0] == 0:
        raise ValueError("labeled is empty: at least one labeled image is needed")
    if pool.shape[0] == 0:
        raise ValueError("pool is empty: nothing to propagate labels to")
    if labeled.shape[1] != pool.shape[1]:
        raise ValueError(
            f"feature dimension mismatch: labeled has D={labeled.shape[1]}, pool has D={pool.shape[1]}"
        )
    if labels.ndim != 1 or labels.shape[0] != labeled.shape[0]:
        raise ValueError(
            f"labels must have shape ({labeled.shape[0]},) to match labeled, got {labels.shape}"
        )
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64, copy=False)
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        raise ValueError(
            f"labels out of range [0, {num_classes}): found {sorted(set(labels[bad].tolist()))[:10]}"
        )
    n_labeled, n_pool = labeled.shape[0], pool.shape[0]
    n_total = n_labeled + n_pool
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if k > n_total:
        raise ValueError(f"k={k} is larger than the number of images ({n_total} labeled + pool)")
    if not (0.0 < float(alpha) < 1.0):
        raise ValueError(f"alpha must be in the open interval (0, 1), got {alpha!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if pca_dims is not None and (isinstance(pca_dims, bool) or not isinstance(pca_dims, (int, np.integer)) or pca_dims < 1):
        raise ValueError(f"pca_dims must be a positive integer or None, got {pca_dims!r}")

    x = _l2(np.concatenate([labeled, pool], axis=0))
    d = x.shape[1]
    used_pca = None
    explained = None
    if pca_dims and d > pca_dims:
        from sklearn.decomposition import PCA

        used_pca = int(min(pca_dims, n_total))
        pca = PCA(n_components=used_pca, svd_solver="randomized", random_state=seed)
        x = _l2(pca.fit_transform(x).astype(np.float32, copy=False))
        explained = float(np.sum(pca.explained_variance_ratio_))
    t_features = time.perf_counter() - t0

    y = np.concatenate([labels, np.full(n_pool, -1, dtype=np.int64)])
    model = LabelSpreading(kernel="knn", n_neighbors=int(k), alpha=float(alpha), max_iter=int(max_iter), n_jobs=-1)
    converged = True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y)
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            converged = False
        else:  # not ours to swallow
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    dist = np.asarray(model.label_distributions_[n_labeled:], dtype=np.float64)
    probs = np.zeros((n_pool, num_classes), dtype=np.float64)
    probs[:, model.classes_.astype(np.int64)] = dist
    probs = np.where(np.isfinite(probs), probs, 0.0)
    mass = probs.sum(axis=1)
    unreached = ~(mass > 0)
    probs[~unreached] /= mass[~unreached, None]
    probs[unreached] = 1.0 / num_classes
    seconds = time.perf_counter() - t0
    info = {
        "k": int(k),
        "alpha": float(alpha),
        "pca_dims": used_pca,
        "pca_explained_variance": explained,
        "n_labeled": n_labeled,
        "n_pool": n_pool,
        "num_classes": num_classes,
        "classes_labeled": [int(c) for c in model.classes_],
        "iterations": int(model.n_iter_),
        "converged": converged,
        "unreached": int(unreached.sum()),
        "n_jobs": -1,
        "feature_seconds": t_features,
    }
    return Propagation(probs=probs.astype(np.float32), seconds=seconds, info=info)
