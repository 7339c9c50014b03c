"""Learning from unlabeled images: where pseudo-labels come from (a teacher run, label
propagation over frozen features), how the pool is read and checked, and the multi-round
self-training driver. The per-step losses are training methods in ``methods/``."""
