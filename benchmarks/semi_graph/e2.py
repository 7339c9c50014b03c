import sys, glob, time, numpy as np, torch
import os; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load import pool_of
from smooth import *
from safetensors.torch import load_file
from headstart.predictor import Predictor
from headstart.engine import Batches, extract_features
torch.set_num_threads(2)
px, truth, lx, ly = pool_of(0)
T = load_file(glob.glob("/tmp/r/s0/teacher/teacher-tables/*.safetensors")[0])["probs"].numpy()
p = Predictor("/tmp/r/s0/teacher", device="cpu")
allx = torch.cat([lx, px])
t = time.time()
f, _ = extract_features(p.model, Batches(allx, torch.zeros(len(allx), dtype=torch.long), batch_size=256), prepare=p.prepare, device=p.device, show_progress=False)
print("feats", f.shape, time.time() - t, flush=True)
np.save("/tmp/exp/feat_t1_s0.npy", f.numpy())
