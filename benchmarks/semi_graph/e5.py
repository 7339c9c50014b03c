import sys, glob, time, numpy as np, scipy.sparse as sp
import os; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load import pool_of
from smooth import *
from safetensors.torch import load_file
px, truth, lx, ly = pool_of(0)
T1 = load_file(glob.glob("/tmp/r/s0/teacher/teacher-tables/*.safetensors")[0])["probs"].numpy()
T4 = load_file("/tmp/r/s0/teacher_targets.safetensors")["probs"].numpy()
d = np.load("/tmp/exp/knn_t1_d.npy"); idx = np.load("/tmp/exp/knn_t1_idx.npy")
dp = np.load("/tmp/exp/knn_pix_d.npy"); ip = np.load("/tmp/exp/knn_pix_idx.npy")
L = len(ly); C = T1.shape[1]
report("T1", T1, truth); report("T4", T4, truth)
Yh = np.concatenate([np.eye(C)[ly], np.zeros_like(T1)])
S1 = spread(d[:, :10], idx[:, :10], Yh, 0.99, iters=60, gamma=3)[L:]
report("S1", S1, truth)
for w in (0.3, 0.5, 0.7):
    report(f"{w}*S1+T4", w * S1 + (1 - w) * T4, truth)
    report(f"{w}*S1+T1", w * S1 + (1 - w) * T1, truth)
# product of experts
P = S1 * T4; P /= P.sum(1, keepdims=True); report("S1*T4", P, truth)
Y4 = np.concatenate([np.eye(C)[ly], T4])
F = spread(dp, ip, Y4, 0.8, iters=30, gamma=3)[L:]; report("pix-smoothed T4", F, truth)
report("pixT4 + S1", (F + S1) / 2, truth)
F = spread(d[:, :10], idx[:, :10], Y4, 0.9, iters=30, gamma=3)[L:]; report("t1-smoothed T4", F, truth)
