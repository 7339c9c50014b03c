"""Combination rules: (member probabilities, weights) → probabilities."""

from .rules import greedy_weights, hard_vote, soft_vote

__all__ = ["greedy_weights", "hard_vote", "soft_vote"]
