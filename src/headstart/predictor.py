"""A finished run, loaded and ready to score images: the one loader every consumer uses
(``eval``, ``predict``, ``explain``, the augmentation audit; later ensembles, distillation
teachers and export)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from .augment import parse_invariances, tta_views, unsafe_magnitudes
from .backbones import Backbone
from .data import ImageSet
from .data.files import load_square_files
from .data.fingerprint import default_cache_dir
from .data.tensors import images_tensor
from .engine import Batches, Prepare, extract_features, pick_device, predict_logits
from .engine.cache import FeatureCache
from .engine.prepare import ToDevice
from .errors import RunError
from .runfolder import ENSEMBLE, LoadedRun, load_run, read_audit, read_config


class Predictor:
    """A loaded run, ready to score images (files, folders, arrays or an ImageSet)."""

    def __init__(self, run_dir: str | Path, *, device: str = "auto") -> None:
        self.device = pick_device(device)
        self.run: LoadedRun = load_run(run_dir, device=self.device)
        self.model: Backbone = self.run.model.to(memory_format=torch.channels_last)
        # an ensemble prepares the pixels for each member itself (its members' sizes and normalisations differ)
        self.prepare = ToDevice(self.device) if self.is_ensemble else Prepare(self.run.preprocess, self.run.image_size, self.device)
        self.feature_cache: dict[str, int] | None = None

    @property
    def is_ensemble(self) -> bool:
        return self.run.kind == ENSEMBLE

    def member_probs(self, load: Callable[[int], torch.Tensor], *, batch_size: int = 64) -> np.ndarray:
        """An ensemble's members' probabilities (M, N, C), each member on the images as
        ``load(size)`` gives them at its own input size (files are decoded once per size, so
        every member sees exactly what it sees as a run of its own); the combined probabilities
        are ``self.model.combine`` of them."""
        if not self.is_ensemble:
            raise RunError(f"{self.run.path} is not an ensemble")
        loaded = {size: load(size) for size in dict.fromkeys(prep.image_size for prep in self.model.inputs)}
        outs = []
        self.model.eval()
        with torch.inference_mode():
            for member, prep in zip(self.model.members, self.model.inputs):
                x = loaded[prep.image_size]
                outs.append(torch.cat([member(prep(self.prepare(x[i:i + batch_size]))).float().softmax(1).cpu()
                                       for i in range(0, len(x), batch_size)]))
        return torch.stack(outs).numpy()

    def combine(self, member_probs: np.ndarray) -> np.ndarray:
        """An ensemble's combined probabilities from its members' (``member_probs``)."""
        with torch.inference_mode():
            return self.model.combine(torch.from_numpy(member_probs).to(self.device)).cpu().numpy()

    def member_probs_imageset(self, imageset: ImageSet, *, num_workers: int = 2) -> np.ndarray:
        return self.member_probs(lambda size: images_tensor(imageset, size=None if imageset.is_array else size, num_workers=num_workers))

    @property
    def classes(self) -> list[str]:
        return self.run.classes

    def proba_tensor(self, images: torch.Tensor, *, batch_size: int = 64, views: Sequence[Any] | None = None) -> np.ndarray:
        """Probabilities for uint8 (N, 3, H, W) images; with ``views`` (test-time augmentation),
        the mean of the probabilities over the views."""
        per_view = self.proba_views(images, views or [None], batch_size=batch_size)
        return per_view[0] if len(per_view) == 1 else np.mean(per_view, axis=0)

    def proba_views(self, images: torch.Tensor, views: Sequence[Any], *, batch_size: int = 64) -> list[np.ndarray]:
        """Probabilities for each view (a uint8 → uint8 transform, applied batch by batch; None:
        the image itself)."""
        labels = torch.zeros(len(images), dtype=torch.long)
        out = []
        for view in views:
            prepare = self.prepare if view is None else (lambda x, v=view: self.prepare(v(x)))
            logits, _ = predict_logits(self.model, Batches(images, labels, batch_size=batch_size), prepare=prepare, device=self.device)
            out.append(logits.softmax(1).numpy())
        return out

    def tta_views(self, spec: str | None = None) -> tuple[list[Any], list[str]]:
        """The label-safe test-time views for this run: the defaults (or ``spec``) less those the
        run's declared invariances exclude or its label-safety audit flagged."""
        inv = parse_invariances((read_config(self.run.path).get("resolved") or {}).get("invariances"), self.classes)
        declared = None if inv is None else inv.default
        audit = read_audit(self.run.path)
        unsafe = None if audit is None else unsafe_magnitudes(audit)
        return tta_views(spec, declared=declared, unsafe=unsafe)

    def images_of(self, imageset: ImageSet, *, num_workers: int = 2) -> torch.Tensor:
        return images_tensor(imageset, size=None if imageset.is_array else self.run.image_size, num_workers=num_workers)

    @property
    def body_frozen(self) -> bool:
        """Whether the whole body is the pretrained one, untouched (linear probe, kNN): its
        features of an image are then those any such run computes, and can be shared."""
        return not self.is_ensemble and int(self.run.meta.get("frozen_stages", 0)) >= self.model.num_stages

    def proba_imageset(self, imageset: ImageSet, *, num_workers: int = 2, share_features: bool = False) -> np.ndarray:
        """Probabilities for every image of a set. With ``share_features`` (``evaluate``: test
        sets are scored again and again) and a frozen body, the pooled features go through the
        feature cache, so every linear-probe and kNN run on the same weights scores the same
        images with one pass of the network (the demo's kNN and linear runs, or one run evaluated
        twice); only the head runs for the others. Other callers (arrays handed to
        ``predict_proba``) leave the disk cache alone."""
        if self.is_ensemble:
            return self.combine(self.member_probs_imageset(imageset, num_workers=num_workers))
        x = self.images_of(imageset, num_workers=num_workers)
        cache_dir = default_cache_dir()
        if not (share_features and self.body_frozen) or cache_dir is None:
            return self.proba_tensor(x)
        cache = FeatureCache(cache_dir)
        key = cache.key_for(model=self.model, image_size=self.run.image_size, device=self.device, imageset=imageset)
        hit = cache.get(key)
        if hit is None:
            labels = torch.from_numpy(imageset.labels.astype(np.int64))
            feats, _ = extract_features(
                self.model, Batches(x, labels, batch_size=64), prepare=self.prepare, device=self.device,
                description="features", show_progress=False,
            )
            cache.put(key, feats, labels)
        else:
            feats = hit[0]
        self.feature_cache = {"hits": cache.hits, "misses": cache.misses}
        self.model.eval()
        outs = []
        with torch.inference_mode():
            for chunk in feats.split(4096):
                outs.append(self.model.forward_head(chunk.to(self.device)).float().softmax(1).cpu())
        return torch.cat(outs).numpy()

    def proba_files(
        self, paths: Iterable[str | Path], *, views: Sequence[Any] | None = None, warned: list[tuple[str, str]] | None = None
    ) -> tuple[list[Path], np.ndarray, list[tuple[str, str]]]:
        """Probabilities for image files; unreadable files are returned with their reason (and
        files that decoded with warnings added to ``warned``)."""
        ok, x, bad = load_square_files(paths, self.run.image_size, warned)
        if not ok:
            return ok, np.zeros((0, len(self.classes))), bad
        if self.is_ensemble and not views:
            def load(size: int) -> torch.Tensor:
                return x if size == self.run.image_size else load_square_files(ok, size)[1]

            return ok, self.combine(self.member_probs(load)), bad
        return ok, self.proba_tensor(x, views=views), bad
