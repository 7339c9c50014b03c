"""Transfer strategies, learning-rate groups and the rules behind the defaults."""

from . import rules
from .strategies import STRATEGIES, StrategyInfo, frozen_stages_for, param_groups

__all__ = ["STRATEGIES", "StrategyInfo", "frozen_stages_for", "param_groups", "rules"]
