import sys, time, numpy as np
import os; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load import pool_of
from smooth import report
from headstart.semi.propagate import graph_table
px, truth, lx, ly = pool_of(0)
L = len(ly)
f = np.load("/tmp/exp/feat_st1.npy")
out = graph_table([(f[:L], f[L:])], ly, 10); report(f"graph_table st1 {out.seconds:.0f}s", out.probs, truth); print(out.info)
