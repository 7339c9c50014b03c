import sys, glob, time, numpy as np, torch
import os; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load import pool_of
from smooth import *
from safetensors.torch import load_file
from headstart.predictor import Predictor
from headstart.engine import Batches, extract_features
run, tag = sys.argv[1], sys.argv[2]
px, truth, lx, ly = pool_of(0)
p = Predictor(run, device="cpu")
allx = torch.cat([lx, px])
t = time.time()
f, _ = extract_features(p.model, Batches(allx, torch.zeros(len(allx), dtype=torch.long), batch_size=256), prepare=p.prepare, device=p.device, show_progress=False)
print("feats", f.shape, time.time() - t, flush=True)
logits = p.model.forward_head(f).softmax(1).detach().numpy() if hasattr(p.model, "forward_head") else None
f = f.numpy(); np.save(f"/tmp/exp/feat_{tag}.npy", f)
f = f / np.linalg.norm(f, axis=1, keepdims=True)
Z = PCA(128, svd_solver="randomized", random_state=0).fit_transform(f); Z /= np.linalg.norm(Z, axis=1, keepdims=True)
d, idx = knn_graph(Z, 20)
np.save(f"/tmp/exp/knn_{tag}_idx.npy", idx); np.save(f"/tmp/exp/knn_{tag}_d.npy", d)
L = len(ly); C = 10
if logits is not None: report("own head", logits[L:], truth)
Yh = np.zeros((len(Z), C)); Yh[np.arange(L), ly] = 1
for k in (10, 20):
    for a in (0.99, 0.999):
        F = spread(d[:, :k], idx[:, :k], Yh, a, iters=60, gamma=3); report(f"labels-only k{k} a{a}", F[L:], truth)
T4 = load_file("/tmp/r/s0/teacher_targets.safetensors")["probs"].numpy()
Y4 = np.concatenate([np.eye(C)[ly], T4])
for a in (0.5, 0.9):
    F = spread(d[:, :10], idx[:, :10], Y4, a, iters=30, gamma=3); report(f"T4 smoothed a{a}", F[L:], truth)
