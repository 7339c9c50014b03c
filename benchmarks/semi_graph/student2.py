import sys, time, numpy as np, torch, json
sys.argv_ = sys.argv
table_file, out, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
import headstart.api_semi as A
from headstart import TrainConfig, train, evaluate
T = torch.from_numpy(np.load(table_file)).float()
A.member_tables = lambda *a, **k: [T]
t0 = time.perf_counter()
train(TrainConfig(data="fashion-mnist", labels_per_class=10, seed=0, unlabeled="pool", method="pseudolabel", teacher="/tmp/r/s0",
                  method_options={"view": "strong", "targets": "soft", "threshold": "0.3"}, drop_path_rate=0.2, epochs=epochs,
                  output=out, progress=False))
wall = time.perf_counter() - t0
acc = evaluate(out)["accuracy"]
print(json.dumps({"table": table_file, "out": out, "epochs": epochs, "wall": wall, "test_acc": acc}))
