"""What the pseudo-label methods share: confidence thresholds (fixed, FlexMatch's per-class
curriculum, FreeMatch's self-adaptive ones), distribution alignment, and the statistics every
such method logs. Not a method itself (the leading underscore keeps it out of the registry).

References, as implemented in USB (semilearn): FlexMatch (Zhang et al., 2021) scales the fixed
threshold τ per class by how many pool images that class has confidently claimed so far,
β(c) = σ(c) / max(max_c σ, N − Σσ), threshold τ · β/(2 − β); FreeMatch (Wang et al., 2023) keeps
an EMA of the mean top confidence (the global threshold, starting at 1/C) and of the mean class
probabilities, and gives class c the threshold global · p̃(c) / max p̃; distribution alignment
(ReMixMatch, Berthelot et al., 2020) multiplies predictions by target / running-mean class
distribution and renormalises.

In a process group every statistic is updated from all processes' images (the batch means
all-reduced, FlexMatch's per-image claims all-gathered), so each process holds the same state.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as tdist

THRESHOLDS = ("fixed", "flexmatch", "freematch")


def _group() -> bool:
    return tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over the processes of a group (``t`` itself alone), on ``t``'s device
    (NCCL reduces on the GPU, gloo anywhere)."""
    if not _group():
        return t
    out = t.clone()
    if tdist.get_backend() == "nccl" and out.device.type != "cuda":
        out = out.cuda()
    tdist.all_reduce(out)
    return out.to(t.device)


def all_mean(t: torch.Tensor) -> torch.Tensor:
    """The mean of ``t`` over the processes of a group (``t`` itself alone)."""
    return all_sum(t) / tdist.get_world_size() if _group() else t


def all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """``t`` from every process, concatenated (shares may differ in length by one)."""
    if not _group():
        return t
    n = torch.tensor([len(t)], device=t.device)
    sizes = [torch.zeros_like(n) for _ in range(tdist.get_world_size())]
    tdist.all_gather(sizes, n)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros((longest, *t.shape[1:]), dtype=t.dtype, device=t.device)
    padded[: len(t)] = t
    parts = [torch.zeros_like(padded) for _ in sizes]
    tdist.all_gather(parts, padded)
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes)])


class Thresholds:
    """Per-class confidence thresholds and the mask they give.

    ``kind`` is ``fixed`` (τ for every class), ``flexmatch`` or ``freematch``; ``pool_size`` is
    the number of unlabeled images (FlexMatch remembers each one's last confident class).
    ``update(probs, index)`` folds a batch of (all processes') predictions into the state;
    ``mask(probs)`` is 1 where the top probability reaches its class's threshold.
    """

    def __init__(self, kind: str, tau: float, num_classes: int, pool_size: int, *, momentum: float = 0.999) -> None:
        if kind not in THRESHOLDS:
            raise ValueError(f"thresholds must be one of {', '.join(THRESHOLDS)}, not {kind!r}")
        self.kind, self.tau, self.num_classes, self.momentum = kind, float(tau), int(num_classes), float(momentum)
        self.claimed = torch.full((pool_size,), -1, dtype=torch.long)  # FlexMatch: each pool image's last confident class
        self.global_conf = torch.tensor(1.0 / num_classes)  # FreeMatch: EMA of the mean top confidence
        self.class_probs = torch.full((num_classes,), 1.0 / num_classes)  # FreeMatch: EMA of the mean class distribution

    def per_class(self) -> torch.Tensor:
        """The current threshold of each class, shape ``(C,)``."""
        if self.kind == "fixed":
            return torch.full((self.num_classes,), self.tau)
        if self.kind == "flexmatch":
            counts = torch.bincount(self.claimed[self.claimed >= 0], minlength=self.num_classes).float()
            unused = float((self.claimed < 0).sum())
            denom = max(float(counts.max()), unused)  # the warm-up form: unclaimed images count as a class
            beta = counts / denom if denom > 0 else torch.zeros(self.num_classes)
            return self.tau * beta / (2.0 - beta)
        return self.global_conf * self.class_probs / self.class_probs.max()

    def update(self, probs: torch.Tensor, index: torch.Tensor | None = None) -> None:
        """Fold a batch of predicted distributions ``(N, C)`` (and, for FlexMatch, the pool
        indices of those images) into the statistics, across every process."""
        probs = probs.detach().float()
        if self.kind == "flexmatch":
            if index is None:
                raise ValueError("FlexMatch thresholds need the pool index of each image")
            conf, pred = probs.max(1)
            both = all_gather_cat(torch.stack([index.long(), pred.long(), (conf > self.tau).long()], 1))
            over = both[:, 2] == 1
            self.claimed[both[over, 0].cpu()] = both[over, 1].cpu()
        elif self.kind == "freematch":
            m = self.momentum
            stats = all_mean(torch.cat([probs.max(1).values.mean().reshape(1), probs.mean(0)]))
            self.global_conf = m * self.global_conf + (1 - m) * stats[0].cpu()
            self.class_probs = m * self.class_probs + (1 - m) * stats[1:].cpu()

    def mask(self, probs: torch.Tensor) -> torch.Tensor:
        """1.0 where an image's top probability reaches the threshold of its top class."""
        conf, pred = probs.max(1)
        return (conf >= self.per_class().to(probs.device)[pred]).float()

    def coverage(self) -> float:
        """FlexMatch: the share of the pool confidently claimed at least once (else NaN)."""
        return float((self.claimed >= 0).float().mean()) if self.kind == "flexmatch" else float("nan")

    def state_dict(self) -> dict[str, Any]:
        return {"claimed": self.claimed, "global_conf": self.global_conf, "class_probs": self.class_probs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["claimed"]) != len(self.claimed):
            raise ValueError(
                f"the checkpoint's unlabeled pool had {len(state['claimed'])} images, this run has {len(self.claimed)}; "
                "resume with the same --unlabeled"
            )
        self.claimed = state["claimed"].clone()
        self.global_conf, self.class_probs = state["global_conf"].clone(), state["class_probs"].clone()


class Alignment:
    """Distribution alignment: predictions × target / running mean of predictions, renormalised.

    ``target`` is the class distribution the pool should follow (the labeled images', or
    uniform); the running mean is an EMA with ``momentum`` over all processes' batches.
    """

    def __init__(self, target: torch.Tensor, momentum: float = 0.999) -> None:
        self.target = target.float() / target.float().sum()
        self.running = self.target.clone()
        self.momentum = float(momentum)

    def __call__(self, probs: torch.Tensor) -> torch.Tensor:
        """Update the running mean with ``probs`` (N, C) and return them aligned."""
        mean = all_mean(probs.detach().float().mean(0))
        self.running = self.momentum * self.running + (1 - self.momentum) * mean.cpu()
        aligned = probs * (self.target / self.running.clamp_min(1e-12)).to(probs.device)
        return aligned / aligned.sum(1, keepdim=True)

    def state_dict(self) -> dict[str, Any]:
        return {"running": self.running}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.running = state["running"].clone()


def sharpen(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """``probs`` raised to ``1/temperature`` and renormalised (``temperature`` 1: unchanged)."""
    if temperature == 1.0:
        return probs
    p = probs ** (1.0 / temperature)
    return p / p.sum(1, keepdim=True)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a distribution per row, ``(N,)``: −Σ_c t_c log softmax(z)_c."""
    return -(targets * torch.log_softmax(logits.float(), dim=1)).sum(1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ mask·values / N: the masked images count in the denominator too, as in FixMatch."""
    return (values * mask).sum() / max(1, len(values))


def pseudo_counts(mask: torch.Tensor, pred: torch.Tensor, truth: torch.Tensor | None) -> torch.Tensor:
    """Counts over a batch of unlabeled images: (kept with a hidden label, of those right,
    kept, drawn); the hidden labels are only compared, never trained on."""
    kept = mask.float()
    if truth is None:
        known = right = torch.zeros((), device=mask.device)
    else:
        k = (truth >= 0).float() * kept
        known, right = k.sum(), ((pred == truth).float() * k).sum()
    return torch.stack([known, right, kept.sum(), torch.tensor(float(len(mask)), device=mask.device)]).detach().double().cpu()


class UnlabeledMethod:
    """Mixin of the pseudo-label methods: their thresholds, alignment, EMA teacher and state.

    Expects ``options`` with ``threshold``, ``thresholds``, ``ema_decay``, ``align``,
    ``targets`` and ``temperature``, and a ``setup`` with the pool's size. Used with
    :class:`~headstart.methods.base.TrainingMethod`.
    """

    def _init_unlabeled(self) -> None:
        o, s = self.options, self.setup
        if s.mix is not None:
            from ..errors import ConfigError

            raise ConfigError(f"--method {type(self).__name__.lower()} does not mix batches; drop --cutmix/--mixup")
        self.thresholds = Thresholds(o.thresholds, o.threshold, s.num_classes, max(1, s.pool_size))
        prior = s.class_prior if s.class_prior is not None else torch.ones(s.num_classes)
        self.alignment = Alignment(prior) if o.align else None
        self.ema = None
        if o.ema_decay > 0:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.model, decay=o.ema_decay)
        self.truth = s.pool_truth
        self.counts = torch.zeros(4, dtype=torch.float64)  # this epoch's pseudo_counts, summed

    def pseudo_targets(self, probs: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """From predicted distributions of unlabeled images: (targets, mask, predicted class).
        Alignment first (if on), then the thresholds' statistics and mask, then hard one-hot or
        (sharpened) soft targets."""
        if self.alignment is not None:
            probs = self.alignment(probs)
        self.thresholds.update(probs, index)
        mask = self.thresholds.mask(probs)
        pred = probs.argmax(1)
        if self.options.targets == "hard":
            targets = torch.nn.functional.one_hot(pred, probs.shape[1]).float()
        else:
            targets = sharpen(probs, self.options.temperature)
        return targets.detach(), mask.detach(), pred

    def stats(self, mask: torch.Tensor, pred: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """The step's logged ``mask`` (share of drawn unlabeled images kept); the counts behind
        the epoch's pseudo-label accuracy are kept apart (``epoch_info``)."""
        truth = None if self.truth is None else self.truth.to(index.device)[index]
        self.counts += pseudo_counts(mask, pred, truth)
        return {"mask": mask.float().mean()}

    def step_result(self, sup: torch.Tensor, unsup: torch.Tensor, l_logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
                    pred: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """What a pseudo-label step returns: the loss (labeled + ``weight`` × unlabeled), both
        parts, the labeled accuracy and the mask rate (the counts behind the pool figures kept)."""
        out = {"loss": sup + self.options.weight * unsup, "sup_loss": sup.detach(), "unsup_loss": unsup.detach()}
        hard = labels if labels.ndim == 1 else labels.argmax(1)
        out["acc"] = (l_logits.detach().argmax(1) == hard).float().mean()
        out.update(self.stats(mask, pred, index))
        return out

    def pool_counts_info(self) -> dict[str, Any]:
        """The epoch's pseudo-label figures, over every process, and the counts reset:
        ``pool_mask`` (share of drawn images kept) and, where hidden labels are known,
        ``pool_pseudo_acc`` (share of kept pseudo-labels that are right)."""
        known, right, kept, drawn = all_sum(self.counts).tolist()
        self.counts = torch.zeros(4, dtype=torch.float64)
        out: dict[str, Any] = {"pool_mask": kept / max(1.0, drawn)}
        if self.truth is not None:
            out["pool_pseudo_acc"] = right / known if known > 0 else None  # None: nothing with a hidden label was kept
        return out

    # -- hooks of TrainingMethod ----------------------------------------------------------------
    def after_step(self, step: int) -> None:
        if self.ema is not None:
            self.ema.update(self.model, step=step)

    def eval_module(self):
        return self.model if self.ema is None else self.ema.module

    def epoch_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {**self.pool_counts_info(), "pool_thresholds": [round(float(t), 4) for t in self.thresholds.per_class()]}
        if self.thresholds.kind == "flexmatch":
            info["pool_coverage"] = self.thresholds.coverage()
        return info

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"counts": self.counts.clone()}
        if self.thresholds.kind != "fixed":
            out["thresholds"] = self.thresholds.state_dict()
        if self.alignment is not None:
            out["alignment"] = self.alignment.state_dict()
        if self.ema is not None:
            out["ema"] = self.ema.module.state_dict()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if ("ema" in state) != (self.ema is not None) or ("alignment" in state) != (self.alignment is not None):
            raise ValueError("the checkpoint's method state does not match -O ema_decay/align; resume with the run's own options")
        if ("thresholds" in state) != (self.thresholds.kind != "fixed"):
            raise ValueError("the checkpoint's thresholds do not match -O thresholds; resume with the run's own options")
        if "thresholds" in state:
            self.thresholds.load_state_dict(state["thresholds"])
        self.counts = state["counts"].clone()
        if self.alignment is not None:
            self.alignment.load_state_dict(state["alignment"])
        if self.ema is not None:
            self.ema.module.load_state_dict(state["ema"])


def check_common(o: Any) -> None:
    """The options every pseudo-label method shares, checked (ValueError names the option)."""
    if not 0.0 <= o.threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1] (0 keeps every pseudo-label), got {o.threshold}")
    if o.thresholds not in THRESHOLDS:
        raise ValueError(f"thresholds must be one of {', '.join(THRESHOLDS)}, got {o.thresholds!r}")
    if o.targets not in ("hard", "soft"):
        raise ValueError(f"targets must be hard or soft, got {o.targets!r}")
    if o.temperature <= 0:
        raise ValueError(f"temperature must be above 0, got {o.temperature}")
    if o.weight < 0:
        raise ValueError(f"weight must be at least 0, got {o.weight}")
    if o.ratio < 1:
        raise ValueError(f"ratio must be at least 1 unlabeled image per labeled image, got {o.ratio}")
    if not 0.0 <= o.ema_decay < 1.0:
        raise ValueError(f"ema_decay must be in [0, 1), got {o.ema_decay}")
