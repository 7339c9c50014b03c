"""The first student's table: the teachers' mean against the labels spread over the kNN graphs of
the teachers' own features (joined), on a finished route run. Usage: e11.py ROUTE_DIR SEED."""
import sys, glob, time, numpy as np, torch
import os; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load import pool_of
from smooth import report
from headstart.semi.propagate import graph_table
from headstart.semi.teacher import member_features
from headstart.ensemble.rules import soft_vote
torch.set_num_threads(2)
route, seed = sys.argv[1], int(sys.argv[2])
px, truth, lx, ly = pool_of(seed)
L = len(ly)
teachers = sorted(glob.glob(f"{route}/teacher*/"), key=lambda p: (len(p), p))
teachers = [t for t in teachers if os.path.isfile(os.path.join(t, "model.safetensors"))]
classes = [str(c) for c in range(10)]
from headstart.predictor import Predictor
classes = Predictor(teachers[0], device="cpu").classes
t = time.time()
per = member_features(",".join(teachers), lx, px, classes, device="cpu")
print("features", len(per), "teachers", round(time.time() - t), "s", flush=True)
for i, (p, fl, fp) in enumerate(per):
    np.save(f"/tmp/exp/feat_s{seed}_t{i+1}.npy", np.concatenate([fl, fp]))
    report(f"teacher {i+1} head", p.numpy(), truth)
head = soft_vote(torch.stack([p for p, _, _ in per]).numpy()) if len(per) > 1 else per[0][0].numpy()
report("teachers' mean (head)", head, truth)
g1 = graph_table([(per[0][1], per[0][2])], ly, len(classes), seed=seed)
report(f"graph, first teacher ({g1.seconds:.0f}s)", g1.probs, truth)
gj = graph_table([(fl, fp) for _, fl, fp in per], ly, len(classes), seed=seed)
report(f"graph, all {len(per)} teachers joined ({gj.seconds:.0f}s)", gj.probs, truth)
report("graph joined + head, averaged", (gj.probs + head) / 2, truth)
