"""``--search``: try the advisor's top candidates briefly and keep the best on validation.

Successive halving (Jamieson & Talwalkar 2016; Hyperband's inner loop): every candidate trains
with a quarter of its epoch budget; the better half (rounded up) goes on with half the budget
(trained again from the pretrained weights, with the schedule fitted to the new length); the
survivor is the winner and trains in full. Three candidates cost about 0.75 + 1 + 1 = 2.75 full
runs. Ties keep the rules' order, so the search only overrules the rules on evidence.
"""

from __future__ import annotations

import math
import tempfile
from typing import Any, Callable, Sequence

from ..console import console
from ..finetune import rules
from .advisor import Advice, describe

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


def search_then_train(config: Any, advice: Advice, train: Callable[..., Any]) -> Any:
    """``--search``: successive halving over ``advice``'s candidates on a validation split, then
    the winner trains in full as an ordinary ``auto`` run that records the search.

    ``train(config, **kw)`` trains one run (``TrainConfig``) and returns its result (with
    ``val_accuracy`` and ``seconds``); called with ``config`` itself for the final run
    (``choice=`` the winner, ``search_log=`` the trials) and with a trial's config for each trial.
    """
    cands = advice.candidates
    min_count = int(advice.size["min_per_class"])
    if len(cands) < 2 or (config.val is None and min_count < 2):
        why = "only one candidate" if len(cands) < 2 else f"the smallest class has {min_count} labeled image(s): nothing to validate on"
        console.print(f"[yellow]--search skipped:[/yellow] {why}; training the advisor's choice")
        return train(config, search_log=[])
    # the search needs a validation split even where training alone would use every label
    val_fraction = config.val_fraction or (0.0 if config.val else 0.2)
    num_train = int(round(advice.size["total"] * (1 - val_fraction))) if not config.val else int(advice.size["total"])
    batch = config.batch_size or rules.default_batch_size(num_train=num_train)
    console.print(f"[bold]search[/bold]: {len(cands)} candidates, successive halving at {', '.join(f'{f:.0%}' for f in ROUNDS)} of their epochs")

    def score(cand: dict[str, Any], fraction: float) -> float:
        epochs = config.epochs or rules.default_epochs(num_train=num_train, batch_size=batch, strategy=cand["strategy"])
        trial_epochs = max(1, round(epochs * fraction))
        with tempfile.TemporaryDirectory() as tmp:
            trial = config.with_updates(
                output=tmp, search=False, progress=False, val_fraction=val_fraction, epochs=trial_epochs,
                **{k: v for k, v in cand.items() if k == "strategy" or getattr(config, k) is None},  # the user's settings stay
            )
            quiet, console.quiet = console.quiet, True
            try:
                result = train(trial)
            finally:
                console.quiet = quiet
        acc = float(result.val_accuracy or 0.0)
        console.print(f"  {describe(cand)}, {trial_epochs} epochs: validation accuracy {acc:.4f} ({result.seconds:.0f} s)")
        return acc

    winner, log = successive_halving(cands, score)
    console.print(f"  [bold]search winner[/bold]: {describe(winner)}")
    return train(config, choice=winner, search_log=log)
