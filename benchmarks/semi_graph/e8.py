import sys, glob, time, numpy as np
import os; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load import pool_of
from smooth import *
from safetensors.torch import load_file
px, truth, lx, ly = pool_of(0)
L = len(ly); C = 10
T4 = load_file("/tmp/r/s0/teacher_targets.safetensors")["probs"].numpy()
G = {t: (np.load(f"/tmp/exp/knn_{t}_d.npy"), np.load(f"/tmp/exp/knn_{t}_idx.npy")) for t in ("st1", "st2", "t1", "pix")}
Yh = np.zeros((L + len(T4), C)); Yh[np.arange(L), ly] = 1
S = {t: spread(G[t][0][:, :10], G[t][1][:, :10], Yh, 0.99, iters=60, gamma=3)[L:] for t in G}
for t in S: report("S " + t, S[t], truth)
report("st1+st2", (S["st1"] + S["st2"]) / 2, truth)
report("st1+st2+t1", (S["st1"] + S["st2"] + S["t1"]) / 3, truth)
# union graph st1+st2
d = np.concatenate([G["st1"][0][:, :10], G["st2"][0][:, :10]], 1); i = np.concatenate([G["st1"][1][:, :10], G["st2"][1][:, :10]], 1)
report("union st1,st2", spread(d, i, Yh, 0.99, iters=60, gamma=3)[L:], truth)
# teacher prior in st2 space: Y = labels + w * S_st1
for w in (0.2, 0.5, 1.0):
    Y = Yh.copy(); Y[L:] = w * S["st1"]
    report(f"st2 graph, prior w{w} S_st1", spread(G["st2"][0][:, :10], G["st2"][1][:, :10], Y, 0.9, iters=60, gamma=3)[L:], truth)
