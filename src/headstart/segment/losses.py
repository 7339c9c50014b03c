"""Segmentation losses: per-pixel cross-entropy plus soft Dice (Milletari et al. 2016, V-Net).

Cross-entropy alone lets a small class drown in the background's pixels; Dice scores each class
by its overlap, whatever its size, so a class of 2 % of the pixels counts as much as one of
80 %. Their sum is what segmentation_models_pytorch's users train with most often.

Soft Dice of class c over a batch (p the softmax probabilities, g the one-hot truth, sums over
every labelled pixel of the batch):

    dice_c = (2 Σ p_c g_c + ε) / (Σ p_c + Σ g_c + ε),     loss = 1 − mean over classes of dice_c

taken over the classes present in the batch's truth (a class absent from both prediction and
truth would score a perfect 1 from ε alone and dilute the mean; one absent from the truth but
predicted is still punished through its Σ p_c, as it is in the classes that are present).
Pixels marked ``IGNORE`` take part in neither loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .masks import IGNORE

EPS = 1.0
"""Dice's smoothing ε (in pixels): keeps the gradient finite for a class with few pixels."""


def dice_loss(logits: torch.Tensor, target: torch.Tensor, *, ignore_index: int = IGNORE, eps: float = EPS) -> torch.Tensor:
    """1 − mean soft Dice over the classes present in ``target`` (see the module's formula).

    ``logits`` (N, C, H, W), ``target`` (N, H, W) class indices (``ignore_index`` pixels left out)."""
    n, c = logits.shape[:2]
    probs = logits.float().softmax(dim=1)
    valid = target != ignore_index
    t = torch.where(valid, target, torch.zeros_like(target)).long()
    onehot = F.one_hot(t, c).permute(0, 3, 1, 2).float()
    w = valid[:, None].float()
    probs, onehot = probs * w, onehot * w
    inter = (probs * onehot).sum(dim=(0, 2, 3))
    denom = probs.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    dice = (2 * inter + eps) / (denom + eps)
    present = onehot.sum(dim=(0, 2, 3)) > 0
    if not bool(present.any()):
        return logits.sum() * 0.0
    return 1.0 - dice[present].mean()


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, *, dice_weight: float = 1.0, ignore_index: int = IGNORE,
                      class_weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """``{"loss": ce + dice_weight · dice, "ce": ..., "dice": ...}`` for one batch."""
    target = target.long()
    ce = F.cross_entropy(logits.float(), target, weight=class_weights, ignore_index=ignore_index)
    if not torch.isfinite(ce):  # every pixel ignored
        ce = logits.sum() * 0.0
    dice = dice_loss(logits, target, ignore_index=ignore_index) if dice_weight else torch.zeros((), device=logits.device)
    return {"loss": ce + dice_weight * dice, "ce": ce.detach(), "dice": dice.detach()}
