"""``-O align`` with a teacher: the table balanced to the labeled class shares, against the
Sinkhorn iterations written out element by element, and through ``headstart train``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from headstart.semi.teacher import balance_table


def _naive(table, shares, iterations):
    p = [[max(float(v), 0.0) for v in row] for row in table]
    total = sum(shares)
    s = [v / total for v in shares]
    n, c = len(p), len(s)
    for _ in range(iterations):
        col = [sum(p[i][j] for i in range(n)) / n for j in range(c)]
        p = [[p[i][j] * s[j] / max(col[j], 1e-12) for j in range(c)] for i in range(n)]
        p = [[v / max(sum(row), 1e-12) for v in row] for row in p]
    return np.array(p)


def test_balancing_equals_sinkhorn_by_hand_and_reaches_the_shares():
    rng = np.random.default_rng(0)
    table = rng.dirichlet([0.5, 0.5, 0.5], size=40)
    table[:, 0] += 0.6  # a teacher that over-predicts class 0
    table /= table.sum(1, keepdims=True)
    shares = [2, 1, 1]  # labeled images per class
    for iterations in (1, 3, 50):
        got = balance_table(torch.from_numpy(table).float(), shares, iterations=iterations).numpy()
        np.testing.assert_allclose(got, _naive(table, shares, iterations), atol=1e-5)
    got = balance_table(torch.from_numpy(table).float(), torch.tensor(shares)).numpy()
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got.mean(0), [0.5, 0.25, 0.25], atol=1e-4)
    assert (got.argmax(1) != table.argmax(1)).any()  # the over-predicted class gives images back


def test_the_least_sure_images_move_first():
    # four images all leaning to class a, two labeled images of each class: the two least sure go to b
    table = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.55, 0.45]])
    got = balance_table(table, [1, 1])
    assert got.argmax(1).tolist() == [0, 0, 1, 1]
    np.testing.assert_allclose(got.mean(0).numpy(), [0.5, 0.5], atol=1e-4)
    # a table whose shares already match is left as it is
    even = torch.tensor([[0.7, 0.3], [0.3, 0.7]])
    np.testing.assert_allclose(balance_table(even, [1, 1]).numpy(), even.numpy(), atol=1e-6)


@pytest.mark.parametrize("shares", [[1, 1], [1, -1, 1], [0, 0, 0]])
def test_bad_shares_are_refused(shares):
    with pytest.raises(ValueError, match="class shares"):
        balance_table(torch.full((4, 3), 1 / 3), shares)


def test_align_balances_the_teachers_table_in_the_students_run(shapes_folder, tmp_path):
    from PIL import Image, ImageOps
    from safetensors.torch import load_file

    from headstart import TrainConfig, train
    from headstart.data import load_unlabeled
    from headstart.data.tensors import images_tensor
    from headstart.predictor import Predictor
    from headstart.runfolder import rebuild_split
    from headstart.semi.report import pool_section

    pool_dir = tmp_path / "pool"
    for path in sorted(p for p in shapes_folder.rglob("*.png")):
        (pool_dir / path.parent.name).mkdir(parents=True, exist_ok=True)
        with Image.open(path) as img:
            ImageOps.mirror(img.convert("RGB")).save(pool_dir / path.parent.name / f"m{path.stem}.png")
    base = dict(data=str(shapes_folder), image_size=32, device="cpu", progress=False, val_fraction=0.3, batch_size=8,
                strategy="partial", freeze_stages=6)
    teacher = train(TrainConfig(**base, output=str(tmp_path / "t"), epochs=1))
    student = train(TrainConfig(**base, output=str(tmp_path / "s"), epochs=1, unlabeled=str(pool_dir), method="pseudolabel",
                                teacher=str(teacher.run_dir),
                                method_options={"view": "plain", "targets": "soft", "threshold": "0.0", "align": "true"}))
    pool = load_unlabeled(str(pool_dir))
    raw = Predictor(teacher.run_dir, device="cpu").proba_tensor(images_tensor(pool, size=32, num_workers=0))
    train_set, _, _ = rebuild_split(Predictor(student.run_dir, device="cpu").run, "train", "skip")
    labels = np.asarray(train_set.labels)
    table = load_file(str(student.run_dir / "teacher_targets.safetensors"))["probs"].numpy()
    metrics = json.loads((student.run_dir / "metrics.json").read_text())
    shares = np.array(metrics["aligned"]["shares"])
    np.testing.assert_allclose(shares, np.bincount(labels, minlength=3) / len(labels), atol=1e-4)
    np.testing.assert_allclose(table, balance_table(torch.from_numpy(raw), shares).numpy(), atol=1e-4)
    np.testing.assert_allclose(table.mean(0), shares, atol=1e-3)
    classes = Predictor(student.run_dir, device="cpu").classes
    truth = np.array([classes.index(Path(p).parent.name) for p in pool.images])
    assert metrics["aligned"]["accuracy_before"] == pytest.approx(float((raw.argmax(1) == truth).mean()))
    assert metrics["teacher"]["accuracy"] == pytest.approx(float((table.argmax(1) == truth).mean()))
    assert metrics["aligned"]["changed"] == pytest.approx(float((table.argmax(1) != raw.argmax(1)).mean()), abs=1e-4)
    section = pool_section(student.run_dir)
    assert any("balanced to the labeled images' class shares" in str(block) for block in section.blocks)
