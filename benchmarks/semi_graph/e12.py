"""The second student's table: the labels spread over the first student's graph alone (the route's
table) against that graph joined with the teachers' graphs, on a finished two-round route.
Teacher features come from e11.py's saved arrays. Usage: e12.py ROUTE_DIR SEED."""
import sys, glob, time, os, numpy as np, torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load import pool_of
from smooth import report
from headstart.semi.propagate import graph_table
from headstart.semi.teacher import member_features
from headstart.ensemble.rules import soft_vote
from headstart.predictor import Predictor
torch.set_num_threads(2)
route, seed = sys.argv[1], int(sys.argv[2])
px, truth, lx, ly = pool_of(seed)
L = len(ly)
student = os.path.join(route, "student-1")
classes = Predictor(student, device="cpu").classes
cache = f"/tmp/exp/feat_s{seed}_student1.npy"
t = time.time()
(p, fl, fp), = member_features(student, lx, px, classes, device="cpu")
np.save(cache, np.concatenate([fl, fp]))
print("student features", round(time.time() - t), "s", flush=True)
report("first student head", p.numpy(), truth)
teach = [np.load(f) for f in sorted(glob.glob(f"/tmp/exp/feat_s{seed}_t[0-9].npy"))]
print("teachers", len(teach), flush=True)
g1 = graph_table([(fl, fp)], ly, len(classes), seed=seed)
report(f"graph, first student ({g1.seconds:.0f}s)", g1.probs, truth)
report("graph student + head, averaged", (g1.probs + p.numpy()) / 2, truth)
sets = [(fl, fp)] + [(f[:L], f[L:]) for f in teach]
gj = graph_table(sets, ly, len(classes), seed=seed)
report(f"graph, student + {len(teach)} teachers ({gj.seconds:.0f}s)", gj.probs, truth)
gt = graph_table(sets[1:], ly, len(classes), seed=seed)
report("graph, teachers only", gt.probs, truth)
ga = graph_table(sets[:1] * len(teach) + sets[1:], ly, len(classes), seed=seed)
report("graph, student weighted as all teachers", ga.probs, truth)
report("graph student+teachers + head, averaged", (gj.probs + p.numpy()) / 2, truth)
