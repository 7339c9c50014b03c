"""headstart.semi.propagate: label spreading over a kNN graph of frozen features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.semi_supervised import LabelSpreading

from headstart.semi.propagate import Propagation, propagate


def _toy(seed=0, n=40, d=8, c=3, n_labeled=9):
    """Random points with very different row norms (so L2-normalising changes the kNN graph)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32) * rng.uniform(0.1, 10.0, size=(n, 1)).astype(np.float32)
    labels = np.arange(n_labeled) % c
    return x[:n_labeled], labels, x[n_labeled:]


def _l2(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _zhou_reference(x, labels, n_pool, num_classes, k, alpha, tol=1e-13, max_iter=10_000):
    """Zhou et al. 2004 spreading, written out with numpy loops, on the graph scikit-learn builds.

    scikit-learn (semi_supervised/_label_propagation.py + scipy csgraph.laplacian(normed=True)):
    W[i, j] = 1 for the k nearest points j of i, i itself included (directed, not symmetrised);
    degree d_j = column sum of W minus the self loop (in-degree); S = D^-1/2 W D^-1/2 with the
    diagonal zeroed; F0 = Y; F <- alpha S F + (1 - alpha) Y; rows normalised at the end."""
    n = x.shape[0]
    w = np.zeros((n, n))
    for i in range(n):
        dist = np.array([np.sum((x[i] - x[j]) ** 2) for j in range(n)])
        for j in np.argsort(dist, kind="stable")[:k]:
            w[i, j] = 1.0
    deg = np.zeros(n)
    for j in range(n):
        deg[j] = sum(w[i, j] for i in range(n) if i != j)
    deg = np.where(deg == 0, 1.0, np.sqrt(deg))
    s = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                s[i, j] = w[i, j] / (deg[i] * deg[j])
    y = np.zeros((n, num_classes))
    for i, lab in enumerate(labels):
        y[i, lab] = 1.0
    f = y.copy()
    for _ in range(max_iter):
        new = alpha * s @ f + (1 - alpha) * y
        if np.abs(new - f).sum() < tol:
            f = new
            break
        f = new
    else:  # pragma: no cover
        raise AssertionError("reference did not converge")
    # closed form of the same fixed point, as a check on the loop itself
    closed = (1 - alpha) * np.linalg.solve(np.eye(n) - alpha * s, y)
    np.testing.assert_allclose(f, closed, atol=1e-10)
    f = f[-n_pool:]
    return f / f.sum(axis=1, keepdims=True)


def test_matches_sklearn_label_spreading_on_l2_features():
    lab, y, pool = _toy()
    out = propagate(lab, y, pool, 3, k=5, alpha=0.3, pca_dims=None)
    assert isinstance(out, Propagation)
    x = _l2(np.concatenate([lab, pool])).astype(np.float32)
    ref = LabelSpreading(kernel="knn", n_neighbors=5, alpha=0.3, max_iter=30).fit(
        x, np.concatenate([y, -np.ones(len(pool), dtype=int)])
    )
    expected = ref.label_distributions_[len(lab):]
    assert out.probs.dtype == np.float32 and out.probs.shape == (len(pool), 3)
    assert np.allclose(out.probs, expected, atol=1e-6)
    # the un-normalised features give a different graph here, so this test sees a missing L2 step
    raw = LabelSpreading(kernel="knn", n_neighbors=5, alpha=0.3, max_iter=30).fit(
        np.concatenate([lab, pool]), np.concatenate([y, -np.ones(len(pool), dtype=int)])
    )
    assert not np.allclose(raw.label_distributions_[len(lab):], expected, atol=1e-3)
    assert out.info["pca_dims"] is None and out.info["k"] == 5 and out.info["alpha"] == 0.3
    assert out.info["n_labeled"] == len(lab) and out.info["n_pool"] == len(pool)
    assert out.info["converged"] is True and out.info["iterations"] == ref.n_iter_


@pytest.mark.parametrize("seed,k,alpha", [(0, 5, 0.2), (1, 4, 0.5), (2, 7, 0.9)])
def test_matches_naive_zhou_iteration(seed, k, alpha):
    lab, y, pool = _toy(seed=seed)
    out = propagate(lab, y, pool, 3, k=k, alpha=alpha, pca_dims=None, max_iter=1000)
    ref = _zhou_reference(_l2(np.concatenate([lab, pool])), y, len(pool), 3, k, alpha)
    assert out.info["converged"]
    reached = ref.sum(axis=1) > 0
    assert reached.all()
    np.testing.assert_array_equal(out.probs.argmax(axis=1), ref.argmax(axis=1))
    # scikit-learn stops when the summed change is < 1e-3, the reference iterates to 1e-13
    np.testing.assert_allclose(out.probs, ref, atol=2e-3)


def _two_clusters(seed=3, n=60, d=16, noise=0.05):
    rng = np.random.default_rng(seed)
    ca, cb = np.r_[np.ones(d // 2), np.zeros(d // 2)], np.r_[np.zeros(d // 2), np.ones(d // 2)]
    a = rng.normal(size=(n, d)) * noise + ca
    b = rng.normal(size=(n, d)) * noise + cb
    return ca, cb, a, b


def test_two_separated_clusters_one_label_each():
    # the labeled image of each cluster is a typical one (its centre); see the next test for an atypical one
    ca, cb, a, b = _two_clusters()
    lab = np.stack([ca, cb])
    pool = np.concatenate([a, b])
    truth = np.r_[np.zeros(len(a), int), np.ones(len(b), int)]
    out = propagate(torch.tensor(lab, dtype=torch.float32), torch.tensor([0, 1]), torch.tensor(pool), 2, pca_dims=None)
    np.testing.assert_array_equal(out.probs.argmax(axis=1), truth)
    assert (out.probs[np.arange(len(truth)), truth] > 0.5).all()
    assert out.info["unreached"] == 0 and out.seconds > 0


def test_a_label_no_pool_image_has_among_its_neighbours_reaches_nothing():
    """scikit-learn's kNN graph is directed: mass flows to i only from i's own k nearest points.
    A labeled outlier (an "anti-hub": in no one's neighbour list) therefore spreads nothing, and
    its cluster comes back uniform and counted as unreached, not silently given a class."""
    ca, cb, a, b = _two_clusters()
    outlier = ca + np.r_[np.zeros(15), 0.5]  # on A's side, but farther from every A point than A's own 10-NN
    out = propagate(np.stack([outlier, cb]), np.array([0, 1]), np.concatenate([a, b]), 2, pca_dims=None)
    assert out.info["unreached"] == len(a)
    np.testing.assert_allclose(out.probs[: len(a)], 0.5)
    assert (out.probs[len(a):, 1] > 0.5).all()


def test_unlabeled_class_keeps_its_column_in_class_order():
    rng = np.random.default_rng(4)
    centres = np.eye(5, 12) * 3
    # classes 1 and 3 are labeled (non-contiguous); 0, 2, 4 have no labels
    lab = np.stack([centres[1], centres[1], centres[3], centres[3]]) + rng.normal(size=(4, 12)) * 0.1
    pool = np.concatenate([centres[1] + rng.normal(size=(20, 12)) * 0.1, centres[3] + rng.normal(size=(20, 12)) * 0.1])
    out = propagate(lab, np.array([1, 1, 3, 3]), pool, 5, k=5, pca_dims=None)
    assert out.probs.shape == (40, 5)
    np.testing.assert_allclose(out.probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(out.probs.argmax(axis=1), np.r_[np.full(20, 1), np.full(20, 3)])
    assert np.all(out.probs[:, [0, 2, 4]] == 0)
    assert out.info["classes_labeled"] == [1, 3]


def test_pool_rows_no_label_reaches_are_uniform():
    # an isolated pool component (far away, k small) receives no mass from the labels
    rng = np.random.default_rng(5)
    lab = np.array([[1.0, 0, 0, 0], [1.0, 0.01, 0, 0]])
    near = np.array([1.0, 0, 0, 0]) + rng.normal(size=(5, 4)) * 0.01
    far = np.array([0, 0, 0, 1.0]) + rng.normal(size=(5, 4)) * 0.01
    out = propagate(lab, np.array([0, 1]), np.concatenate([near, far]), 3, k=3, pca_dims=None)
    assert out.info["unreached"] == 5
    np.testing.assert_allclose(out.probs[5:], 1 / 3)
    np.testing.assert_allclose(out.probs.sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"pool": np.zeros((5, 3))}, "dimension mismatch"),
        ({"labels": np.array([0, 1, 7])}, "out of range"),
        ({"labels": np.array([0, -1, 1])}, "out of range"),
        ({"labels": np.array([0, 1])}, "labels must have shape"),
        ({"labels": np.array([0.0, 1.0, 1.0])}, "integers"),
        ({"pool": np.zeros((0, 4))}, "pool is empty"),
        ({"labeled": np.zeros((0, 4)), "labels": np.zeros(0, int)}, "labeled is empty"),
        ({"k": 0}, "k must be"),
        ({"k": 100}, "larger than the number"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.0}, "alpha"),
        ({"alpha": -0.5}, "alpha"),
        ({"pool": np.full((5, 4), np.nan)}, "NaN"),
        ({"num_classes": 0}, "num_classes"),
        ({"pca_dims": 0}, "pca_dims"),
        ({"pool": np.zeros(4)}, "2-D"),
    ],
)
def test_bad_inputs_raise(kwargs, message):
    rng = np.random.default_rng(6)
    args = {"labeled": rng.normal(size=(3, 4)), "labels": np.array([0, 1, 1]), "pool": rng.normal(size=(5, 4)),
                "num_classes": 3, "k": 2}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        propagate(args.pop("labeled"), args.pop("labels"), args.pop("pool"), args.pop("num_classes"), **args)


def test_pca_path_on_high_dim_separable_data():
    rng = np.random.default_rng(7)
    d, c = 300, 4
    means = np.abs(rng.normal(size=(c, d))) * 2
    truth = np.repeat(np.arange(c), 50)
    x = np.abs(means[truth] + rng.normal(size=(len(truth), d)))
    lab_idx = np.array([0, 50, 100, 150, 1, 51, 101, 151])
    pool_idx = np.setdiff1d(np.arange(len(truth)), lab_idx)
    plain = propagate(x[lab_idx], truth[lab_idx], x[pool_idx], c, pca_dims=None)
    reduced = propagate(x[lab_idx], truth[lab_idx], x[pool_idx], c, pca_dims=16, seed=1)
    assert plain.info["pca_dims"] is None
    assert reduced.info["pca_dims"] == 16 and 0 < reduced.info["pca_explained_variance"] <= 1
    np.testing.assert_array_equal(plain.probs.argmax(axis=1), truth[pool_idx])
    np.testing.assert_array_equal(reduced.probs.argmax(axis=1), plain.probs.argmax(axis=1))
    # D <= pca_dims: no PCA
    assert propagate(x[lab_idx], truth[lab_idx], x[pool_idx], c, pca_dims=d).info["pca_dims"] is None


def test_pca_path_is_l2_pca_l2_then_spreading():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(9)
    x = np.abs(rng.normal(size=(150, 200)))
    y = np.arange(9) % 3
    out = propagate(x[:9], y, x[9:], 3, k=6, pca_dims=20, seed=2)
    z = PCA(20, svd_solver="randomized", random_state=2).fit_transform(_l2(x).astype(np.float32))
    z = _l2(z).astype(np.float32)
    ref = LabelSpreading(kernel="knn", n_neighbors=6, alpha=0.2, max_iter=30).fit(z, np.r_[y, -np.ones(141, int)])
    np.testing.assert_allclose(out.probs, ref.label_distributions_[9:], atol=1e-5)
    # and it is not what spreading on the unprojected features gives (so the PCA step is seen)
    plain = propagate(x[:9], y, x[9:], 3, k=6, pca_dims=None)
    assert not np.allclose(out.probs, plain.probs, atol=1e-3)


def test_pca_is_seeded():
    rng = np.random.default_rng(8)
    x = np.abs(rng.normal(size=(120, 200)))
    y = np.arange(6) % 3
    a = propagate(x[:6], y, x[6:], 3, pca_dims=20, seed=3)
    b = propagate(x[:6], y, x[6:], 3, pca_dims=20, seed=3)
    np.testing.assert_array_equal(a.probs, b.probs)


def test_convergence_warning_is_recorded_not_shown(recwarn):
    lab, y, pool = _toy()
    out = propagate(lab, y, pool, 3, k=5, alpha=0.9, pca_dims=None, max_iter=2)
    assert out.info["converged"] is False and out.info["iterations"] == 2
    assert not [w for w in recwarn if "max_iter" in str(w.message)]


# -- label spreading over a trained network's features (-O table=graph) -------------------------------

from headstart.semi.propagate import graph_table, knn_edges, spread_labels  # noqa: E402


def _brute_knn(x, k):
    """Cosine similarity of L2 rows, the k most similar other rows, by a full sort."""
    z = _l2(x)
    sim = z @ z.T
    np.fill_diagonal(sim, -np.inf)
    idx = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sim, idx, 1), idx


def test_knn_edges_are_the_k_most_similar_other_rows():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 6)).astype(np.float32) * rng.uniform(0.1, 5.0, size=(50, 1)).astype(np.float32)
    sim, idx = knn_edges(x, 4, pca_dims=None)
    want_sim, want_idx = _brute_knn(x, 4)
    assert (idx != np.arange(50)[:, None]).all()  # never a row itself
    np.testing.assert_array_equal(np.sort(idx, 1), np.sort(want_idx, 1))
    np.testing.assert_allclose(np.sort(sim, 1), np.sort(want_sim, 1), atol=1e-5)


def _dense_closed_form(edges, labels, n, c, alpha, gamma):
    """F* = (1 - α)(I - αS)⁻¹Y with S from the symmetrised weighted graph, written out densely."""
    w = np.zeros((n, n))
    for sim, idx in edges:
        for i in range(n):
            for s, j in zip(sim[i], idx[i]):
                w[i, j] = max(w[i, j], float(s) ** gamma)
    w = np.maximum(w, w.T)
    np.fill_diagonal(w, 0.0)
    d = w.sum(1)
    s = w / np.sqrt(np.outer(d, d))
    y = np.zeros((n, c))
    y[np.arange(len(labels)), labels] = 1.0
    f = (1 - alpha) * np.linalg.solve(np.eye(n) - alpha * s, y)
    out = f[len(labels):]
    return out / out.sum(1, keepdims=True)


@pytest.mark.parametrize("alpha,gamma", [(0.5, 1.0), (0.9, 3.0)])
def test_spread_labels_reaches_the_closed_form_on_a_union_of_graphs(alpha, gamma):
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(30, 5)), rng.normal(size=(30, 7))  # two networks' features of the same 30 images
    labels = np.array([0, 1, 2, 0, 1])
    edges = [knn_edges(a, 4, pca_dims=None), knn_edges(b, 3, pca_dims=None)]
    got = spread_labels(edges, labels, 3, alpha=alpha, gamma=gamma, iterations=400)
    want = _dense_closed_form(edges, labels, 30, 3, alpha, gamma)
    assert got.shape == (25, 3)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_graph_table_follows_the_clusters_where_a_linear_head_on_the_labels_errs():
    """Two interleaved half-moons: one label per moon, a line between the two labels cuts both
    moons, the graph follows each moon."""
    rng = np.random.default_rng(0)
    t = rng.uniform(0, np.pi, 400)
    moon = np.r_[np.c_[np.cos(t[:200]), np.sin(t[:200])], np.c_[1 - np.cos(t[200:]), 0.5 - np.sin(t[200:])]]
    truth = np.r_[np.zeros(200, int), np.ones(200, int)]
    x = np.c_[moon + rng.normal(scale=0.03, size=moon.shape), np.full(400, 3.0)]  # an offset keeps cosine ~ Euclidean here
    lab = np.array([int(np.argmin(t[:200])), 200 + int(np.argmax(t[200:]))])  # the two moons' far tips
    pool = np.setdiff1d(np.arange(400), lab)
    out = graph_table([(x[lab], x[pool])], truth[lab], 2, k=8)
    right = float((out.probs.argmax(1) == truth[pool]).mean())
    nearest = float((np.argmin(((x[pool, None, :2] - x[None, lab, :2]) ** 2).sum(-1), 1) == truth[pool]).mean())
    assert right > 0.97 and nearest < 0.9, (right, nearest)
    assert out.info["networks"] == 1 and out.info["n_pool"] == 398 and np.allclose(out.probs.sum(1), 1.0)


def test_graph_table_refuses_mismatched_rows():
    x = np.random.default_rng(0).normal(size=(20, 4))
    with pytest.raises(ValueError, match="labeled feature rows"):
        graph_table([(x[:3], x[3:])], np.array([0, 1]), 2)
    with pytest.raises(ValueError, match="same images"):
        spread_labels([knn_edges(x, 3, pca_dims=None), knn_edges(x[:10], 3, pca_dims=None)], np.array([0, 1]), 2)
