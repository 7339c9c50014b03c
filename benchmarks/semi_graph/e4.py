import sys, glob, time, numpy as np, scipy.sparse as sp
import os; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load import pool_of
from smooth import *
from safetensors.torch import load_file
px, truth, lx, ly = pool_of(0)
T = load_file(glob.glob("/tmp/r/s0/teacher/teacher-tables/*.safetensors")[0])["probs"].numpy()
d = np.load("/tmp/exp/knn_t1_d.npy"); idx = np.load("/tmp/exp/knn_t1_idx.npy")
dp = np.load("/tmp/exp/knn_pix_d.npy"); ip = np.load("/tmp/exp/knn_pix_idx.npy")
L = len(ly); C = T.shape[1]
Yh = np.concatenate([np.eye(C)[ly], np.zeros_like(T)])
Y0 = np.concatenate([np.eye(C)[ly], T])
for k in (5, 10, 20):
    for a in (0.9, 0.99, 0.999):
        F = spread(d[:, :k], idx[:, :k], Yh, a, iters=60, gamma=3); report(f"labels-only teach k{k} a{a}", F[L:], truth)
for g in (None, 1, 3):
    F = spread(d[:, :10], idx[:, :10], Yh, 0.99, iters=60, gamma=g); report(f"labels-only teach k10 g{g}", F[L:], truth)
F = spread(dp, ip, Yh, 0.99, iters=60, gamma=3); report("labels-only pix k10", F[L:], truth)
# union graph
di = np.concatenate([d[:, :10], dp], 1); ii = np.concatenate([idx[:, :10], ip], 1)
F = spread(di, ii, Yh, 0.99, iters=60, gamma=3); report("labels-only union", F[L:], truth)
# prior with small weight
for w in (0.1, 0.3):
    Yw = np.concatenate([np.eye(C)[ly], w * T])
    for a in (0.9, 0.99):
        F = spread(d[:, :10], idx[:, :10], Yw, a, iters=60, gamma=3); report(f"teach prior w{w} a{a}", F[L:], truth)
        F = spread(di, ii, Yw, a, iters=60, gamma=3); report(f"union prior w{w} a{a}", F[L:], truth)
