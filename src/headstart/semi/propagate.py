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

__all__ = ["Propagation", "graph_table", "knn_edges", "propagate", "spread_labels"]


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


# -- label spreading over a trained network's own features (``-O table=graph``) ---------------------

GRAPH_K = 10
"""Neighbours per image in the graph over a trained network's features. Measured on Fashion-MNIST
(10 labels per class, seed 0, 59,900 pool images, the features of a fine-tuned Lite0): k = 5, 10
and 20 spread labels 78.1, 78.1 and 78.1 % right over the first teacher's features; k = 10 and 20
79.8 and 79.9 % over its student's (benchmarks/results/semi-graph.md): the choice barely matters."""

GRAPH_ALPHA = 0.99
"""How far labels travel (``F <- alpha * S @ F + (1 - alpha) * Y``): near 1 the few labels
reach the whole pool. Same measurement: over the first teacher's features, α = 0.9 gave 77.5 %
right, 0.99 78.1 %, 0.999 78.1 %."""

GRAPH_GAMMA = 3.0
"""Edge weight = cosine similarity ** gamma (Iscen et al., 2019): near neighbours count more."""

GRAPH_ITERATIONS = 60


def knn_edges(x: np.ndarray, k: int = GRAPH_K, *, pca_dims: int | None = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest other rows of every row of ``x`` (N, D): (similarity (N, k), index
    (N, k)), by cosine similarity of L2-normalised rows (after a randomized PCA to ``pca_dims``
    when D is larger, fitted on ``x``, and normalised again). scikit-learn's exact
    ``NearestNeighbors`` does the search."""
    from sklearn.neighbors import NearestNeighbors

    x = _l2(_features(x, "features"))
    n = len(x)
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, {n - 1}] for {n} images, got {k}")
    if pca_dims and x.shape[1] > pca_dims and n > pca_dims:
        from sklearn.decomposition import PCA

        x = _l2(PCA(n_components=pca_dims, svd_solver="randomized", random_state=seed).fit_transform(x).astype(np.float32))
    dist, idx = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    # drop each row's own entry (the nearest, unless an exact duplicate sorts first: then drop the row itself wherever it is)
    own = idx == np.arange(n)[:, None]
    own[~own.any(1), -1] = True
    keep = ~own
    idx = idx[keep].reshape(n, k)
    sim = np.clip(1.0 - dist[keep].reshape(n, k) ** 2 / 2.0, 0.0, 1.0)
    return sim.astype(np.float32), idx.astype(np.int64)


def spread_labels(
    edges: list[tuple[np.ndarray, np.ndarray]],
    labels: np.ndarray,
    num_classes: int,
    *,
    alpha: float = GRAPH_ALPHA,
    gamma: float = GRAPH_GAMMA,
    iterations: int = GRAPH_ITERATIONS,
) -> np.ndarray:
    """Label spreading (Zhou et al., 2004) over the union of kNN graphs ``edges`` (each from
    ``knn_edges`` over the same N images), the first ``len(labels)`` images labeled: the graph
    is weighted (similarity ** ``gamma``), symmetrised (``max(W, Wᵀ)``, so an image that is in no
    other's list still passes its label on: scikit-learn's ``LabelSpreading`` keeps the directed
    graph, which spread 78.7 % right against this 79.8 % on the same student features), normalised
    ``S = D^-1/2 W D^-1/2`` and iterated ``F <- alpha S F + (1 - alpha) Y`` from Y = the one-hot
    labels. Returns the unlabeled rows' class distributions (N - L, C); a row no label reached is
    uniform."""
    import scipy.sparse as sp

    labels = np.asarray(labels, dtype=np.int64)
    n = len(edges[0][1])
    w = None
    for sim, idx in edges:
        if len(idx) != n:
            raise ValueError(f"every graph must cover the same images: {len(idx)} rows against {n}")
        one = sp.csr_matrix((np.asarray(sim, dtype=np.float64).ravel() ** gamma, (np.repeat(np.arange(n), idx.shape[1]), idx.ravel())),
                            shape=(n, n))
        w = one if w is None else w.maximum(one)  # a pair in several graphs keeps its largest weight
    w = w.maximum(w.T).tocsr()
    w.setdiag(0)
    w.eliminate_zeros()
    deg = np.asarray(w.sum(1)).ravel()
    inv = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1e-300)), 0.0)
    s = sp.diags(inv) @ w @ sp.diags(inv)
    y = np.zeros((n, num_classes))
    y[np.arange(len(labels)), labels] = 1.0
    f = y.copy()
    for _ in range(iterations):
        f = alpha * (s @ f) + (1.0 - alpha) * y
    out = np.maximum(f[len(labels):], 0.0)
    mass = out.sum(1, keepdims=True)
    return np.where(mass > 0, out / np.where(mass > 0, mass, 1.0), 1.0 / num_classes).astype(np.float32)


def graph_table(
    feature_sets: list[tuple[np.ndarray, np.ndarray]],
    labels: np.ndarray,
    num_classes: int,
    *,
    k: int = GRAPH_K,
    alpha: float = GRAPH_ALPHA,
    seed: int = 0,
) -> Propagation:
    """Pseudo-labels for the pool from the labels alone, spread over kNN graphs of trained
    networks' own features (Iscen et al., 2019, "Label Propagation for Deep Semi-supervised
    Learning"): ``feature_sets`` holds, per network, (labeled features (L, D), pool features (P, D));
    each network's graph is built on its own features and the graphs are joined. A network that
    has learned the task places same-class images together even where its head errs: over a
    Fashion-MNIST student's features (10 labels per class) the spread labels were 79.8 % right
    where the student's own head was 77.8 % (benchmarks/results/semi-graph.md)."""
    t0 = time.perf_counter()
    labels = _as_numpy(labels, "labels").astype(np.int64)
    edges = []
    for labeled, pool in feature_sets:
        labeled, pool = _features(labeled, "labeled"), _features(pool, "pool")
        if len(labeled) != len(labels):
            raise ValueError(f"{len(labeled)} labeled feature rows for {len(labels)} labels")
        edges.append(knn_edges(np.concatenate([labeled, pool]), k, seed=seed))
    t_graph = time.perf_counter() - t0
    probs = spread_labels(edges, labels, num_classes, alpha=alpha)
    info = {"k": int(k), "alpha": float(alpha), "gamma": GRAPH_GAMMA, "networks": len(feature_sets), "n_labeled": int(len(labels)),
            "n_pool": int(len(probs)), "graph_seconds": round(t_graph, 1)}
    return Propagation(probs=probs, seconds=time.perf_counter() - t0, info=info)
