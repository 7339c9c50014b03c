"""Combination rules: (member probabilities, weights) → probabilities; their held-out comparison;
how diverse the members are; the ensemble as one module (``ensemble.model``)."""

from .diversity import disagreement, diversity
from .rules import RULES, Rule, accuracy_weights, fit_stack, greedy_weights, hard_vote, soft_vote, stack
from .select import choose_rule, compare_rules

__all__ = [
    "RULES", "Rule", "accuracy_weights", "choose_rule", "compare_rules", "disagreement", "diversity", "fit_stack", "greedy_weights",
    "hard_vote", "soft_vote", "stack",
]
