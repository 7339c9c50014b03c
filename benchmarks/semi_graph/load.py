import numpy as np, torch
from headstart.config import TrainConfig
from headstart.data.labeled import read_training_data
from headstart.semi.pool import evaluation_sets, read_pool
from headstart.data.tensors import images_tensor

def pool_of(seed=0, k=10, data="fashion-mnist"):
    cfg = TrainConfig(data=data, labels_per_class=k, seed=seed, unlabeled="pool", output="/tmp/x")
    d = read_training_data(cfg.with_updates(unlabeled=None))
    pool = read_pool("pool", full=d.full, pool_idx=d.pool_idx, labeled=d.labeled, evaluation=evaluation_sets(data, None, "skip"),
                     data_spec=data, transductive=False, limit=None, seed=seed, on_bad_image="skip")
    px = images_tensor(pool.images, size=None, num_workers=0)
    lx = images_tensor(d.labeled, size=None, num_workers=0)
    ly = np.asarray(d.labeled.labels)
    return px, pool.truth, lx, ly
