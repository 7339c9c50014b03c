#!/usr/bin/env bash
# One machine, CPU only: the same partial fine-tune in 1, 2 and 4 DDP processes (gloo), the
# cores split evenly among them; wall time, the run's own train time, and official test accuracy.
# Usage: bash benchmarks/ddp_cpu.sh [CORES]   (results quoted in results/ddp-cpu.md)
set -euo pipefail
cores=${1:-$(nproc)}
c="fashion-mnist --labels-per-class 500 --strategy partial --image-size 64 --epochs 2 --batch-size 64 --val-fraction 0 --device cpu --no-progress"
out=$(mktemp -d)
for n in 1 2 4; do
  export OMP_NUM_THREADS=$((cores / n))
  s=$(date +%s.%N)
  python -m headstart train $c -o "$out/d$n" --devices $n > "$out/log$n" 2>&1
  e=$(date +%s.%N)
  python - "$out/d$n" "$n" "$s" "$e" <<'PY'
import json, sys
run, n, s, e = sys.argv[1:]
m = json.load(open(f"{run}/metrics.json"))
h = m["history"][-1]
print(f"processes {n}: wall {float(e) - float(s):.1f}s, train {m['seconds']:.1f}s, "
      f"final train_loss {h['train_loss']:.4f}, train_acc {h['train_acc']:.4f}")
PY
done
for n in 1 2 4; do python -m headstart eval "$out/d$n" 2>&1 | grep -i "^accuracy" | head -1; done
