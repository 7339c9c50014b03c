"""``--search``: try the advisor's top candidates briefly and keep the best on validation.

Successive halving (Jamieson & Talwalkar 2016; Hyperband's inner loop): every candidate trains
with a quarter of its epoch budget; the better half (rounded up) goes on with half the budget
(trained again from the pretrained weights, with the schedule fitted to the new length); the
survivor is the winner and trains in full. Three candidates cost about 0.75 + 1 + 1 = 2.75 full
runs. Ties keep the rules' order, so the search only overrules the rules on evidence.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

# fractions of each candidate's epoch budget, one per round
ROUNDS = (0.25, 0.5)


def successive_halving(
    candidates: Sequence[dict[str, Any]],
    score: Callable[[dict[str, Any], float], float],
    *,
    rounds: Sequence[float] = ROUNDS,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The winning candidate and one log row per trial (round, fraction, candidate, score).

    ``score(candidate, fraction)`` trains ``candidate`` with ``fraction`` of its epochs and
    returns its validation accuracy.
    """
    alive = list(candidates)
    if not alive:
        raise ValueError("no candidates to search")
    log: list[dict[str, Any]] = []
    for r, fraction in enumerate(rounds):
        if len(alive) == 1:
            break
        scored = []
        for i, cand in enumerate(alive):
            s = float(score(cand, fraction))
            scored.append((s, i, cand))
            log.append({"round": r, "fraction": fraction, "candidate": dict(cand), "val_accuracy": s})
        scored.sort(key=lambda t: (-t[0], t[1]))  # best first; ties keep the earlier (rules') order
        keep = math.ceil(len(alive) / 2) if r < len(rounds) - 1 else 1
        alive = [c for _, _, c in scored[:keep]]
    return alive[0], log
