import sys, time, numpy as np
import os; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load import pool_of
from smooth import report
from headstart.semi.propagate import propagate
px, truth, lx, ly = pool_of(0)
L = len(ly)
f = np.load("/tmp/exp/feat_st1.npy")
for k, a in [(10, 0.99), (20, 0.99)]:
    t = time.time(); out = propagate(f[:L], ly, f[L:], 10, k=k, alpha=a, pca_dims=128, max_iter=60)
    report(f"sklearn k{k} a{a} {time.time()-t:.0f}s", out.probs, truth)
