"""A method that declares unlabeled views gets them from ``headstart.train``: the pool is read
from ``--unlabeled``, decoded, and each batch carries the views it asked for, prepared."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from headstart import TrainConfig, train
from headstart.errors import ConfigError
from headstart.methods import METHODS, Batch, Needs, TrainingMethod


class _Views(TrainingMethod):
    """Cross-entropy, plus a zero-weight term that touches both unlabeled views."""

    needs = Needs(unlabeled_views=("weak", "strong"), unlabeled_ratio=2, cached_features=False)
    seen: list = []

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        weak, strong = batch.views["unlabeled_weak"], batch.views["unlabeled_strong"]
        _Views.seen.append((tuple(batch.images.shape), tuple(weak.shape), tuple(strong.shape), weak.dtype,
                            float((weak - strong).abs().mean()), tuple(batch.extras["unlabeled_index"].shape)))
        logits = self.net(batch.images)
        touch = 0.0 * (self.net(weak).sum() + self.net(strong).sum())
        return {"loss": F.cross_entropy(logits, batch.labels) + touch}


class _ViewsSayingFeaturesWouldDo(_Views):
    """The same, declaring (wrongly) that cached features may serve: its views must still come."""

    needs = Needs(unlabeled_views=("weak", "strong"), unlabeled_ratio=2)


@pytest.fixture(params=[_Views, _ViewsSayingFeaturesWouldDo])
def views_method(monkeypatch, request):
    monkeypatch.setitem(METHODS._entries, "views-test", request.param)
    _Views.seen = []
    return _Views


def _other_images(folder, out):
    """The folder's images mirrored: other content (the labeled copies would be dropped as duplicates)."""
    from PIL import Image, ImageOps

    out.mkdir()
    for i, path in enumerate(sorted(p for p in folder.rglob("*") if p.is_file())):
        try:
            with Image.open(path) as img:
                ImageOps.mirror(img.convert("RGB")).save(out / f"u{i}.png")
        except OSError:
            continue  # the fixture's unreadable files
    return out


def test_the_pool_reaches_the_method_as_prepared_views(views_method, shapes_folder, tmp_path):
    pool = _other_images(shapes_folder, tmp_path / "pool")
    cfg = TrainConfig(
        data=str(shapes_folder), unlabeled=str(pool), method="views-test", strategy="linear", image_size=32, epochs=1,
        batch_size=8, val_fraction=0.0, device="cpu", progress=False, output=str(tmp_path / "r"),
    )
    result = train(cfg)
    assert len(views_method.seen) == 4  # 30 readable images, batches of 8
    for images, weak, strong, dtype, differ, index in views_method.seen:
        assert weak == strong == (16, 3, 32, 32) and dtype == torch.float32 and index == (16,)  # 2 × the batch, normalised, at 32 px
        assert differ > 0  # two different views of the same images
    assert [s[0][0] for s in views_method.seen] == [8, 8, 8, 6]
    import yaml

    reasons = yaml.safe_load((result.run_dir / "config.yaml").read_text())["reasons"]
    assert "needs the images themselves" in reasons["features"]  # a frozen body, yet no feature cache: the method said so


def test_a_method_that_needs_unlabeled_images_without_a_pool_is_refused_before_reading_data(views_method, tmp_path):
    with pytest.raises(ConfigError, match="learns from unlabeled images: give --unlabeled DIR"):
        train(TrainConfig(data=str(tmp_path / "missing"), method="views-test", device="cpu", progress=False))


def test_a_folder_pool_beside_an_in_memory_labeled_set_is_decoded_at_the_run_size(views_method, shapes_folder, tmp_path):
    # digits are 8-px arrays kept at native size; the pool's files (40-90 px) are decoded at the input size
    train(TrainConfig(
        data="digits", labels_per_class=2, unlabeled=str(shapes_folder), method="views-test", strategy="partial", image_size=24,
        epochs=1, batch_size=8, val_fraction=0.0, device="cpu", progress=False, output=str(tmp_path / "d"),
    ))
    assert views_method.seen and all(weak == (16, 3, 24, 24) for _, weak, *_ in views_method.seen)
