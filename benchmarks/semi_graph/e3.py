import sys, glob, time, numpy as np
import os; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load import pool_of
from smooth import *
from safetensors.torch import load_file
px, truth, lx, ly = pool_of(0)
T = load_file(glob.glob("/tmp/r/s0/teacher/teacher-tables/*.safetensors")[0])["probs"].numpy()
f = np.load("/tmp/exp/feat_t1_s0.npy")
f = f / np.linalg.norm(f, axis=1, keepdims=True)
t = time.time(); Z = PCA(128, svd_solver="randomized", random_state=0).fit_transform(f); Z /= np.linalg.norm(Z, axis=1, keepdims=True)
d, idx = knn_graph(Z, 20); print("graph", time.time() - t, flush=True)
np.save("/tmp/exp/knn_t1_idx.npy", idx); np.save("/tmp/exp/knn_t1_d.npy", d)
L = len(ly); C = T.shape[1]
report("teacher-1", T, truth)
Y0 = np.concatenate([np.eye(C)[ly], T])
for k in (10, 20):
    for a in (0.5, 0.8, 0.9, 0.99):
        F = spread(d[:, :k], idx[:, :k], Y0, a, iters=30, gamma=3)
        report(f"teach k{k} a{a}", F[L:], truth)
# hard labels only
Yh = np.concatenate([np.eye(C)[ly], np.zeros_like(T)])
F = spread(d[:, :10], idx[:, :10], Yh, 0.99, iters=50, gamma=3); report("teach-space labels only", F[L:], truth)
Zp = pixel_space(np.concatenate([lx.numpy(), px.numpy()])[:, :1], 50); dp, ip = knn_graph(Zp, 10)
np.save("/tmp/exp/knn_pix_idx.npy", ip); np.save("/tmp/exp/knn_pix_d.npy", dp)
for a in (0.5, 0.8):
    F1 = spread(d[:, :10], idx[:, :10], Y0, a, iters=30, gamma=3)
    F2 = spread(dp, ip, Y0, a, iters=30, gamma=3)
    report(f"both mean a{a}", (F1[L:] + F2[L:]) / 2, truth)
