"""The route's two students (and its teachers) together on the test set: does averaging the
first student's probabilities with the final student's add to the final student alone, and does
TTA? Usage: e13.py ROUTE_DIR."""
import sys, glob, os, itertools, numpy as np, torch
from headstart.data import resolve
from headstart.predictor import Predictor
torch.set_num_threads(2)
route = sys.argv[1]
test = resolve("fashion-mnist", split="test")
y = np.asarray(test.labels)
runs = {"final": route, "student-1": f"{route}/student-1"}
for i, t in enumerate(sorted(glob.glob(f"{route}/teacher*/"), key=lambda p: (len(p), p))):
    runs[f"teacher{i+1}"] = t
P = {}
for name, r in runs.items():
    p = Predictor(r, device="cpu")
    P[name] = p.proba_tensor(p.images_of(test, num_workers=0), batch_size=256)[:, [p.classes.index(c) for c in test.classes]]
    print(f"{name:30s} {np.mean(P[name].argmax(1) == y):.4f}", flush=True)
def acc(names): return np.mean(np.mean([P[n] for n in names], 0).argmax(1) == y)
print(f"{'final + student-1':30s} {acc(['final', 'student-1']):.4f}")
T = [n for n in P if n.startswith("teacher")]
print(f"{'teachers':30s} {acc(T):.4f}")
print(f"{'final + student-1 + teachers':30s} {acc(['final', 'student-1'] + T):.4f}")
print(f"{'final + teachers':30s} {acc(['final'] + T):.4f}")
