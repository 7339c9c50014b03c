import time, sys, numpy as np, scipy.sparse as sp
from sklearn.neighbors import NearestNeighbors
from sklearn.decomposition import PCA

def knn_graph(Z, k):
    nn = NearestNeighbors(n_neighbors=k + 1, n_jobs=-1).fit(Z)
    d, idx = nn.kneighbors(Z)
    return d[:, 1:], idx[:, 1:]

def spread(d, idx, Y0, alpha, iters=20, gamma=None, sym=True):
    n, k = idx.shape
    if gamma is None:
        w = np.ones_like(d)
    else:  # cosine similarity on l2 rows: s = 1 - d^2/2
        s = np.clip(1 - d ** 2 / 2, 0, None)
        w = s ** gamma
    W = sp.csr_matrix((w.ravel(), (np.repeat(np.arange(n), k), idx.ravel())), shape=(n, n))
    if sym:
        W = W.maximum(W.T)
    deg = np.asarray(W.sum(1)).ravel()
    dinv = 1 / np.sqrt(np.maximum(deg, 1e-12))
    S = sp.diags(dinv) @ W @ sp.diags(dinv)
    F = Y0.copy()
    for _ in range(iters):
        F = alpha * (S @ F) + (1 - alpha) * Y0
    F = np.maximum(F, 0)
    return F / F.sum(1, keepdims=True)

def pixel_space(x_uint8, dims=50, seed=0):
    X = x_uint8.reshape(len(x_uint8), -1).astype(np.float32) / 255.0
    Z = PCA(dims, svd_solver="randomized", random_state=seed).fit_transform(X)
    return Z / np.linalg.norm(Z, axis=1, keepdims=True)

def report(name, P, truth):
    pred = P.argmax(1); conf = P.max(1)
    o = np.argsort(-conf); top = o[: int(0.7 * len(o))]
    print(f"{name:40s} acc {np.mean(pred == truth):.4f} top70 {np.mean(pred[top] == truth[top]):.4f} conf {conf.mean():.3f}", flush=True)
