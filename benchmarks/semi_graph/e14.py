"""Class balance of the route's tables: the table as trained on, against the same table
aligned to the labeled class shares (one step of distribution alignment, and Sinkhorn balancing
of the columns). Usage: e14.py ROUTE_DIR SEED."""
import sys, os, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load import pool_of
from smooth import report
from safetensors.numpy import load_file
route, seed = sys.argv[1], int(sys.argv[2])
_, truth, _, ly = pool_of(seed)
prior = np.bincount(ly, minlength=10) / len(ly)
for name, f in (("first student's table (teachers' mean)", f"{route}/student-1/teacher_targets.safetensors"),
                ("second student's table (graph)", f"{route}/teacher_targets.safetensors")):
    P = load_file(f)["probs"].astype(np.float64)
    print(f"-- {name}: predicted shares", np.round(np.bincount(P.argmax(1), minlength=10) / len(P), 3).tolist(), flush=True)
    report("as trained", P, truth)
    Q = P * (prior / P.mean(0)); Q /= Q.sum(1, keepdims=True)
    report("aligned (one step)", Q, truth)
    Q = P.copy()
    for _ in range(50):
        Q *= prior / Q.mean(0); Q /= Q.sum(1, keepdims=True)
    report("Sinkhorn-balanced", Q, truth)
    print("   balanced shares", np.round(np.bincount(Q.argmax(1), minlength=10) / len(Q), 3).tolist(), flush=True)
