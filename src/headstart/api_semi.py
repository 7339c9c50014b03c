"""The self-training API and the unlabeled pieces of a training run.

``selftrain`` runs Noisy Student rounds (``semi.selftrain``) through ``train``, scoring each round
on the data's test split where it has one; ``self_training`` is ``train --unlabeled`` with
``--method auto`` (teachers, then one or two students). ``read_unlabeled``, ``teacher_targets`` and
``pool_epochs`` are the steps ``api._train`` takes when a run has unlabeled images.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Callable

import torch

from .console import console
from .data import ImageSet
from .data.sources import is_builtin
from .engine import Prepare, cached_features
from .engine.cache import FeatureCache, default_cache_dir
from .ensemble import soft_vote
from .runfolder import read_config
from .semi.selftrain import SelftrainPlan, finished
from .semi.selftrain import selftrain as run_rounds
from .semi.teacher import PROPAGATE, balance_table, load_table, member_tables, save_table, table_info, table_summary


def selftrain(
    teacher: str | Path,
    *,
    unlabeled: str,
    rounds: int = 1,
    output: str | Path = "runs/selftrain",
    student: str | None = None,
    options: dict[str, Any] | None = None,
    drop_path_rate: float = 0.2,
    resume: bool = False,
    device: str | None = None,
    **overrides: Any,
) -> list[dict]:
    """Noisy Student from the finished run ``teacher``: ``rounds`` students, each taught by the
    one before on the ``unlabeled`` images (a folder, or ``pool``); the table of rounds (also in
    ``output/rounds.json`` and ``rounds.md``). ``overrides`` are further ``TrainConfig`` fields
    for every student (``epochs``, ``unlabeled_limit``, ``image_size``...)."""
    from .api import train
    from .api_predict import evaluate

    if device is not None:
        overrides["device"] = device
    data = (read_config(Path(teacher)).get("requested") or {}).get("data")

    def score(run: str) -> dict[str, Any]:
        metrics = json.loads((Path(run) / "metrics.json").read_text())
        out: dict[str, Any] = {"val_acc": (metrics.get("val") or {}).get("accuracy")}
        if data and is_builtin(data):
            out["test_acc"] = evaluate(run, device=overrides.get("device", "auto"))["accuracy"]
        return out

    plan = SelftrainPlan(
        teacher=str(teacher), unlabeled=unlabeled, rounds=rounds, output=str(output), student=student, options=dict(options or {}),
        overrides=overrides, drop_path_rate=drop_path_rate,
    )
    return run_rounds(plan, train, score, resume=resume)


ROUTE_FILE = "selftrain.json"
"""Written first by ``train --unlabeled`` (``--method auto``): the request, then the route's plan
(teachers, unlabeled share) once measured, so ``--resume`` continues the same route — the
teacher or the student, whichever was stopped."""

MIN_POOL_RATIO = 2.0
"""Self-training is tried only when the pool holds at least this many images per labeled one."""

ROUTE_TEACHERS = 4
"""Teachers the route trains at most, on the same labels with seeds ``--seed``, ``--seed+1``...:
the mean of their probabilities labels the pool. Measured on Fashion-MNIST at 10 labels per
class (seed 0's labels, training seeds 0–3): one teacher's pseudo-labels were 75.6–76.7 % right,
the mean of 2, 3 and 4 teachers' 76.7, 77.3 and 77.8 % (test 0.757–0.763 alone, 0.775 for four;
benchmarks/results/semi-teachers.md)."""

POOL_ENOUGH = 20_000
"""Unlabeled images one student round uses before time goes to more teachers, and the fewest a
two-student route takes in place of the whole pool: on Fashion-MNIST at 10 labels per class a
round on 20,000 scored as well as one on 45,156 (0.7776 and 0.7754, benchmarks/results/semi-*.md)."""

BUDGET_MARGIN = 0.90
"""Share of the time left that the plan fills: the rest absorbs the final scoring, set-up and a
busy machine. The plan's own estimates run high: on Fashion-MNIST at 10 labels per class (seed
0, 2 Xeon cores) the parts after the first teacher — three more teachers, four passes over the
pool, two student passes — were costed at 1,506 s and took 1,441 s, the route 25.1 of its 30
minutes (benchmarks/results/semi-route30-k10-s0-ort.md); at 85 % that plan would have been cut
to one pass."""


ROUTE_PASSES = 2
"""Passes the route's student makes over its unlabeled images at most, when the time allows.
Measured on Fashion-MNIST at 10 labels per class, each route's own four-teacher table: two
passes scored 0.7903, 0.8123 and 0.7960 against one pass's 0.7852, 0.8081 and 0.7895 (seeds
0–2, +0.4 to +0.7 points each; benchmarks/results/semi-passes.md)."""

SHORT_STUDENT_SHARE = 0.25
"""When the time left cannot pay for the supervised plan's steps, the student makes one pass of
the steps it can pay for, but not fewer than this share of the plan's: below it the student
would stop far short of what its teacher learned (a judgement, not a measurement; at 100 labels
per class on Fashion-MNIST the 30-minute route's student gets 279 of 611 steps, 46 %)."""

STEP_FORWARDS = 2.5
"""A student step's cost per image, in forward passes of the teacher: the route's students on
Fashion-MNIST took 2.0–2.4 (1,248 steps of 16 labeled and 48 unlabeled images in 296–418 s,
teachers labelling 380–650 img/s; benchmarks/results/semi-route30-k10-3seeds.md). Augmenting
the strong view and the optimizer step are in it; the frozen stages' missing backward makes it
less than the 3 of a fully trained network."""

FROZEN_STEP_FORWARDS = 1.3
"""The same for a student whose whole body is frozen (``linear``): one forward pass of the
strong view and the head's step. Measured on Fashion-MNIST at 1 label per class (seed 0, 2 Xeon
cores): 5,000 steps of 8 labeled and 24 unlabeled images in 478 s, PyTorch forward at 421 img/s,
1.26 forward passes per image (benchmarks/results/semi-route30-k1-s0.md)."""


ROUTE_ROUNDS = 2
"""Students the route trains at most: the first learns from the teachers' mean probabilities, the
second from the labels spread over a kNN graph of the first student's own features (``-O
table=graph``). Measured on Fashion-MNIST at 10 labels per class (seed 0, 2 AMD EPYC cores;
benchmarks/results/semi-graph.md): a one-pass student of four teachers scored 0.7780 and its
features spread the 100 labels 79.8–80.2 % right (its own head: 77.8 %); a one-pass second
student on them scored 0.8038. A second pass of one student gained 0.4–0.7 points
(ROUTE_PASSES), so the time goes to the second round first, and before the third and fourth
teachers and the last images of the pool (``ROUND_MIN_TEACHERS``, ``POOL_ENOUGH``). Where two
students do not fit, the one learns from the teachers' graphs (``GRAPH_WHY``)."""

TWO_ROUNDS_WHY = ("on Fashion-MNIST at 10 labels per class two students so taught scored 0.8021, 0.8300 and 0.8152 (seeds 0–2, "
                  "benchmarks/results/semi-route30-k10-graph.md); a first student taught by the teachers' graphs scored 0.8004 "
                  "and 0.8231 (seeds 0, 1), and a second after it 0.7789 and 0.8214: its own predictions were already better "
                  "than the labels spread over its features (79.6 against 77.5 %, 83.0 against 82.6 %; "
                  "benchmarks/results/semi-route30-k10-tgraph.md)")
"""Why, where two students fit, the first learns from the teachers' mean and not their graphs."""

ROUND_MIN_TEACHERS = 2
"""A second round may take the place of the third and fourth teachers, not of the second."""

GRAPH_S_60K = 25.0
"""Seconds one network's kNN graph and its share of the spreading take for 60,000 images (PCA to
128, exact search; on 2 AMD EPYC cores 18–20 s for one network, 37 s for two teachers' graphs
joined, 78 s for four); the search grows with the square of the images."""

GRAPH_WHY = ("on Fashion-MNIST at 10 labels per class (three seeds) they were 79.8, 83.0 and 80.6 % right where the mean of "
             "the same 2, 4 and 2 teachers was 77.0, 80.5 and 77.6 % (benchmarks/results/semi-graph.md)")
"""Why the route's (first) student learns from the labels spread over its teachers' graphs.

Only where the teachers trained their features. A teacher that trained
only a head (``linear``) has the frozen pretrained body's features, and on data unlike ImageNet
labels spread over those did worse than a classifier of the labels alone (``semi/propagate.py``);
its students learn from the teachers' mean probabilities and the route trains one of them."""


@dataclasses.dataclass(frozen=True)
class RouteCosts:
    """What the route measured after its first teacher."""

    teacher_s: float  # one teacher's training, advice included (the first teacher's)
    forward_ips: float  # the teacher's forward speed over images, per second
    step_s: float  # one student step (labeled and unlabeled images together), estimated
    min_steps: int  # the student's fewest steps: the supervised plan's optimizer steps
    unlabeled_per_step: int
    frozen: bool = False  # the teacher trained only a head: its features are the frozen pretrained body's
    spread: bool = False  # the (first) student learns from the labels spread over the teachers' graphs: they are costed

    def whole_passes(self, n: int) -> int:
        """Passes over ``n`` unlabeled images whose steps come nearest ``min_steps`` (at least
        one), as a student without --epochs takes its epochs (``pool_epochs``): a student told
        its passes makes exactly those, and one pass over a pool a few times the labeled set is
        fewer steps than its teacher made (at 100 labels per class on Fashion-MNIST, 308 against
        611). Within half a pass of what ``student_steps`` costs."""
        per = -(-n // max(1, self.unlabeled_per_step))
        return max(1, round(self.min_steps / per)) if per else 1

    def student_steps(self, n: int, passes: int = 1) -> int:
        """The student's steps for ``passes`` over ``n`` unlabeled images (at least ``min_steps``)."""
        return max(self.min_steps, passes * -(-n // max(1, self.unlabeled_per_step)))

    def seconds(self, teachers: int, trained: int, n: int, passes: int = 1, rounds: int = 1) -> float:
        """More teachers' training, every teacher's pass over ``n`` unlabeled images, the student's
        steps, each teacher's kNN graph where the student learns from them (``spread``); with
        ``rounds`` 2, the second round (``second_round``)."""
        graphs = teachers * graph_seconds(n) if self.spread else 0.0
        return (max(0, teachers - trained) * self.teacher_s + teachers * n / self.forward_ips + self.student_steps(n, passes) * self.step_s
                + graphs + (self.second_round(n, passes) if rounds >= 2 else 0.0))

    def second_round(self, n: int, passes: int = 1) -> float:
        """The first student's pass over ``n`` unlabeled images for its features, its graph and a
        second student of as many steps."""
        return n / self.forward_ips + graph_seconds(n) + self.student_steps(n, passes) * self.step_s


def graph_seconds(n: int) -> float:
    """One network's kNN graph over ``n`` images and its share of the spreading (``GRAPH_S_60K``)."""
    return GRAPH_S_60K * (n / 60_000) ** 2


@dataclasses.dataclass(frozen=True)
class RoutePlan:
    teachers: int
    limit: int | None  # unlabeled images the student uses (None: all)
    why_teachers: str
    why_limit: str
    passes: int | None = None  # the student's passes over them, as its --epochs (None: its own rule, one pass or more)
    why_passes: str = ""
    rounds: int = 1  # students: the second learns from the labels spread over the first's features
    why_rounds: str = ""
    round_s: float = 0.0  # seconds the plan set aside for the second round (the first student's budget leaves them)
    graph: bool = False  # the (first) student learns from the labels spread over the teachers' kNN graphs (-O table=graph)
    why_graph: str = ""


def plan_route(left_s: float | None, costs: RouteCosts, pool: int, *, asked: int | None, trained: int = 1,
               table: str | None = None) -> RoutePlan:
    """How many teachers, how many unlabeled images, how many students and student passes fit
    in ``left_s`` seconds (``None``: no --time-budget), and the (first) student's table. Two
    students where they fit, the first taught by the teachers' mean probabilities and the second
    by the labels spread over the first's features (``ROUTE_ROUNDS``); else one, taught by the
    labels spread over the teachers' own kNN graphs (``GRAPH_WHY``). A teacher that trained only
    a head has no features of its own: one student, taught by the mean. ``table`` is ``-O
    table``: ``head`` never spreads over the teachers' graphs, ``graph`` always does (one student)."""
    if costs.frozen:
        plan = _plan_route(left_s, costs, pool, asked=asked, trained=trained)
        return dataclasses.replace(plan, why_graph=(
            "the teachers' mean probabilities teach the student: they trained only a head over the frozen pretrained body, "
            "and a kNN graph of those features is the pretrained network's, not one this data trained"))
    if table != "graph":
        two = _plan_route(left_s, costs, pool, asked=asked, trained=trained, rounds_ok=True)
        if two.rounds > 1:
            return dataclasses.replace(two, why_graph=f"the teachers' mean probabilities teach the first student: {TWO_ROUNDS_WHY}")
        if table == "head":
            return dataclasses.replace(two, why_graph="-O table=head: the teachers' mean probabilities teach the student")
    one = _plan_route(left_s, dataclasses.replace(costs, spread=True), pool, asked=asked, trained=trained)
    return dataclasses.replace(one, graph=True, why_graph=(
        f"{'-O table=graph' if table == 'graph' else 'one student fits'}: the labels spread over the kNN graphs of the teachers' "
        f"own features teach it, not the teachers' mean probabilities: {GRAPH_WHY}"))


def _plan_route(left_s: float | None, costs: RouteCosts, pool: int, *, asked: int | None, trained: int = 1,
                rounds_ok: bool = False) -> RoutePlan:
    """How many teachers, how many unlabeled images and how many student passes over them fit
    in ``left_s`` seconds (``None``: no --time-budget). More teachers come first once the
    student has ``POOL_ENOUGH`` images (or the whole pool); then the student takes every image
    the time left allows; then, with every image taken, a second pass if it fits."""
    rates = (f"a teacher trained in {costs.teacher_s:.0f} s and labels {costs.forward_ips:.0f} img/s; a student step takes "
             f"~{costs.step_s:.2f} s")
    if left_s is None:
        k = asked or ROUTE_TEACHERS
        why = "--teachers" if asked else f"no --time-budget: the most the route trains ({ROUTE_TEACHERS}); their mean labels best"
        passes = _passes(costs, k, trained, pool, float("inf"))
        rounds = ROUTE_ROUNDS if rounds_ok else 1
        return RoutePlan(k, None, why, "no --time-budget: every unlabeled image", passes,
                         f"no --time-budget: {ROUTE_PASSES} passes over the unlabeled images" if passes else "", rounds,
                         f"no --time-budget: {ROUTE_ROUNDS} students, the second taught by the labels spread over the first's features"
                         if rounds > 1 else "")
    avail = BUDGET_MARGIN * left_s

    def fit(k: int, c: RouteCosts = costs, rounds: int = 1) -> int:
        lo, hi = 0, pool
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if c.seconds(k, trained, mid, 1, rounds) <= avail:
                lo = mid
            else:
                hi = mid - 1
        return lo

    if asked:
        k, why_k = asked, "--teachers"
    else:
        enough = min(pool, POOL_ENOUGH)
        k = next((k for k in range(ROUTE_TEACHERS, trained, -1) if fit(k) >= enough), trained)
        why_k = (f"{k} teacher(s): as many as leave the student {enough} unlabeled images within --time-budget"
                 f" (at most {ROUTE_TEACHERS}); {rates}")
    n = fit(k)
    why_n = (f"{left_s / 60:.1f} min of --time-budget left after the first teacher: {k} teacher pass(es) and one student epoch "
             f"over {n} unlabeled images fit in {BUDGET_MARGIN:.0%} of it; {rates}")
    if costs.seconds(k, trained, 0) > avail:
        # Even the supervised plan's steps do not fit (many labels: a long teacher, long student steps): the student
        # makes one pass over as many unlabeled images as the time affords, fewer steps than the teacher made.
        short = dataclasses.replace(costs, min_steps=0)
        n = fit(k, short)
        steps = short.student_steps(n)
        if steps < SHORT_STUDENT_SHARE * costs.min_steps:
            n, steps = 0, 0
        why_n = (f"{left_s / 60:.1f} min of --time-budget left after the first teacher: the supervised plan's {costs.min_steps} "
                 f"student steps do not fit in {BUDGET_MARGIN:.0%} of it, so one pass of {steps} steps over the {n} unlabeled "
                 f"images that do; {rates}")
        return RoutePlan(k, n, why_k, why_n, 1 if n else None, f"one pass of {steps} steps: what the time left affords" if n else "")
    if rounds_ok:
        # A second student before a second pass, before the teachers past ROUND_MIN_TEACHERS (--teachers stays as asked)
        # and before the last images of the pool: over every image with as many teachers as fit, else with the fewest
        # teachers over as many images as fit, when those are at least POOL_ENOUGH (a round over 20,000 images scored as
        # one over 45,156).
        lowest = k if asked else min(k, ROUND_MIN_TEACHERS)
        k2 = next((k2 for k2 in range(k, lowest - 1, -1) if n == pool and costs.seconds(k2, trained, pool, 1, 2) <= avail), None)
        n2 = pool if k2 is not None else fit(lowest, rounds=2)
        if k2 is None and n2 >= min(pool, POOL_ENOUGH):
            k2 = lowest
        if k2 is not None:
            why_k2 = why_k if k2 == k else (f"{k2} teacher(s): a second student fits with {k2}, not with {k} (a second round "
                                            f"before teachers past {ROUND_MIN_TEACHERS}); {rates}")
            why_n2 = (f"{left_s / 60:.1f} min of --time-budget left after the first teacher: {k2} teacher pass(es) and two "
                      f"students' epochs over {n2} unlabeled images fit in {BUDGET_MARGIN:.0%} of it" + (
                          "" if n2 == pool else f" (a second round before the last {pool - n2} images of the pool: a round over "
                                                f"{POOL_ENOUGH} images scored as one over 45,156)") + f"; {rates}")
            p2 = costs.whole_passes(n2)
            why_p2 = ("one pass for each of the two students" if p2 == 1 else
                      f"{p2} passes for the first student: one pass over {n2} images is {-(-n2 // max(1, costs.unlabeled_per_step))} "
                      f"steps, and {p2} come nearest the supervised plan's {costs.min_steps}")
            return RoutePlan(k2, n2, why_k2, why_n2, p2, why_p2, 2,
                             f"two students{', one pass each,' if p2 == 1 else ''} fit in {BUDGET_MARGIN:.0%} of the time left: the second learns from the "
                             "labels spread over a kNN graph of the first's features (a second round gained more than a second "
                             "pass: benchmarks/results/semi-graph.md)",
                             round(costs.second_round(n2), 1))
    passes = _passes(costs, k, trained, n, avail) if n == pool else None
    why_p = (f"{passes} passes over the {n} unlabeled images fit in {BUDGET_MARGIN:.0%} of the time left (at most {ROUTE_PASSES})"
             if passes else "")
    return RoutePlan(k, n, why_k, why_n, passes, why_p)


def _passes(costs: RouteCosts, k: int, trained: int, n: int, avail: float) -> int | None:
    """The most student passes (2..``ROUTE_PASSES``) over ``n`` images that fit in ``avail``
    seconds and add steps to what one pass takes anyway (``None``: one pass)."""
    return next((p for p in range(ROUTE_PASSES, 1, -1)
                 if costs.seconds(k, trained, n, p) <= avail and costs.student_steps(n, p) > costs.student_steps(n)), None)


@dataclasses.dataclass(frozen=True)
class SecondRound:
    """The second student's share of a two-student route, sized when the first student ends
    from what it measured (``size_second_round``)."""

    limit: int | None  # unlabeled images it uses (None: all)
    passes: int  # its passes over them (its --epochs)
    step_s: float  # the first student's step, measured: its training time over its steps
    image_s: float  # the first student's set-up per pool image and teacher: its time outside training over its teachers' passes
    left_s: float  # the time left when it was sized
    why: str


def size_second_round(left_s: float, costs: RouteCosts, plan: RoutePlan, first: dict[str, Any], teachers: int, pool: int,
                      *, epochs: int | None = None) -> SecondRound:
    """How many unlabeled images and passes the route's second student takes, sized from the
    first student's measured costs (``first``: its ``metrics.json``) to fit ``left_s`` seconds.
    The plan costed both students from one step of the first teacher's measured forward speed,
    and that guess missed by a quarter either way on Fashion-MNIST at 10 labels per class
    (0.38 s planned, 0.47–0.51 s taken; 0.43 s planned, 0.31–0.34 s taken: one route ran 74 s
    past its 30 minutes, another ended 9 minutes early; benchmarks/results/semi-route30-k10-align.md);
    the first student's own step is the same network's on the same kind of batch. The second
    student's set-up is one network's pass over its images (costed at the first student's set-up
    per teacher pass) and a kNN graph. Its plan's images with ``ROUTE_PASSES`` passes (or as
    many as come nearest the supervised plan's steps, ``RouteCosts.whole_passes``) where they fit in
    ``BUDGET_MARGIN`` of the time left; else the most passes over them that fit, and the route
    ends early; else one pass over as many images as fit (not fewer than ``SHORT_STUDENT_SHARE`` of the
    supervised plan's steps take). The time between one pass and two over every image buys
    nothing measured: on Fashion-MNIST at 10 labels per class, two passes over as many images as
    fit scored as one pass over all on the same first students (0.8120 against 0.8127 on seed 0,
    five minutes longer; 0.8247 against 0.8230 on seed 2; benchmarks/results/semi-route30-k10-second.md),
    so the user gets the model sooner. ``epochs`` (--epochs) fixes the passes; only the images are
    sized then."""
    upd = max(1, costs.unlabeled_per_step)
    n1 = int((first.get("teacher") or {}).get("images") or plan.limit or pool)
    ran = max(1, len(first.get("history") or []))
    fit_s, all_s = float(first.get("fit_seconds") or 0.0), float(first.get("seconds") or 0.0)
    step_s = fit_s / (ran * -(-n1 // upd)) if fit_s > 0 else costs.step_s
    image_s = max(0.0, all_s - fit_s) / (max(1, teachers) * n1) if all_s > fit_s else 1.0 / costs.forward_ips

    def seconds(n: int, passes: int) -> float:
        return n * image_s + graph_seconds(n) + passes * -(-n // upd) * step_s

    avail, n0 = BUDGET_MARGIN * left_s, min(plan.limit or pool, pool)
    rates = (f"the first student took {step_s:.2f} s a step (the plan: {costs.step_s:.2f} s) and {image_s * 1000:.2f} ms an image "
             f"per teacher pass; {left_s / 60:.1f} min left")

    def most(passes: int, floor: int) -> int:
        """The most images (``floor``..``n0``) whose ``passes`` fit in ``avail`` (``floor`` when none do)."""
        lo, hi = floor, n0
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if seconds(mid, passes) <= avail:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def sized(n: int, passes: int, how: str) -> SecondRound:
        over = f"{n} unlabeled images" if n == n0 else f"{n} of the plan's {n0} unlabeled images"
        return SecondRound(plan.limit if n == n0 else n, passes, step_s, image_s, left_s,
                           f"{passes} pass(es) over {over}, ~{seconds(n, passes):.0f} s: {how}; {rates}")

    floor = min(n0, math.ceil(SHORT_STUDENT_SHARE * costs.min_steps) * upd)
    past = (f"; even they (at least {SHORT_STUDENT_SHARE:.0%} of the supervised plan's {costs.min_steps} steps) are costed past "
            "the time left")
    if epochs:
        if seconds(n0, epochs) <= avail:
            return sized(n0, epochs, "--epochs")
        n = most(epochs, floor)
        return sized(n, epochs, f"--epochs; as many images as fit in {BUDGET_MARGIN:.0%} of the time left"
                     + ("" if seconds(n, epochs) <= avail else past))
    most_p = max(ROUTE_PASSES, costs.whole_passes(n0))  # a short pass repeated to near the supervised plan's steps
    for p in range(most_p, 0, -1):
        if seconds(n0, p) <= avail:
            if p == most_p:
                return sized(n0, p, f"{p} passes over every image fit in {BUDGET_MARGIN:.0%} of the time left " + (
                    f"(at most {ROUTE_PASSES}: a second pass gained 0.4–0.7 points, benchmarks/results/semi-passes.md)"
                    if p == ROUTE_PASSES else f"(those nearest the supervised plan's {costs.min_steps} steps)"))
            return sized(n0, p, f"{most_p} passes do not fit in {BUDGET_MARGIN:.0%} of the time left, {p} do; the route ends "
                                "early rather than spend the rest on more passes over fewer images (two passes over fewer scored "
                                "as one over all: benchmarks/results/semi-route30-k10-second.md)")
    n = most(1, floor)
    return sized(n, 1, f"as many images as fit in {BUDGET_MARGIN:.0%} of the time left" + ("" if seconds(n, 1) <= avail else past))


def _route_costs(teacher: Path, data: Any, ratio: int, device: Any) -> RouteCosts:
    """The first teacher's measured training time and forward speeds over the labeled images
    (repeated to 512): the pass its teachers will make over the pool (onnxruntime where it
    agrees, ``export/passes.py``) and PyTorch's, from which a student step's cost: a batch of
    ``1 + ratio`` times the labeled batch, ``STEP_FORWARDS`` eager forward passes per image, or
    ``FROZEN_STEP_FORWARDS`` where the teacher trained only a head (``linear``). The student
    trains as its first teacher did: the strategy asked for, or the advisor's on the same
    labels. Training the student's top stages on its pseudo-labels instead did not pay where
    its teachers are linear heads: at 1 label per class on Fashion-MNIST it scored 0.6063
    against the linear student's 0.6074, in 2.4× the time (benchmarks/results/semi-route30-k1-s0.md)."""
    from .data.tensors import images_tensor
    from .export.passes import measure
    from .predictor import Predictor
    from .semi.teacher import TABLES_DIR

    saved = read_config(teacher)["resolved"]
    metrics = json.loads((teacher / "metrics.json").read_text())
    batch, epochs, n_train = int(saved["batch_size"]), int(saved["epochs"]), int(metrics.get("num_train") or len(data.labeled_idx))
    predictor = Predictor(teacher, device=str(device))
    x = images_tensor(data.labeled, size=int(saved["image_size"]), num_workers=0)
    x = x.repeat(-(-512 // len(x)), 1, 1, 1)[:512]
    # the pass the teachers will make over the pool (onnxruntime where it agrees with PyTorch), on images as the pool keeps them
    speed = measure(predictor, x, teacher / TABLES_DIR)
    return RouteCosts(
        teacher_s=float(metrics.get("seconds") or metrics.get("fit_seconds") or 0.0) + speed["export_s"], forward_ips=speed["pass_ips"],
        step_s=(FROZEN_STEP_FORWARDS if saved["strategy"] == "linear" else STEP_FORWARDS) * batch * (1 + ratio) / speed["eager_ips"], min_steps=epochs * -(-n_train // batch),
        unlabeled_per_step=batch * ratio, frozen=saved["strategy"] == "linear",
    )


def self_training(config: Any, train_one: Any, t_start: float, *, agree: Callable[[Any], Any] = lambda x: x, is_main: bool = True) -> Any:
    """``headstart train DATA --unlabeled ...`` with ``--method auto``: supervised teachers in
    ``OUT/teacher``, ``OUT/teacher-2``... (the recipe asked for, on the same labels with seeds
    ``--seed``, ``--seed+1``...), then, when the pool is large enough to pay, a Noisy Student
    round in ``OUT`` (soft targets, strong views, dropout and stochastic depth) — two where the
    time allows: a first student in ``OUT/student-1`` taught by the mean of the teachers'
    probabilities, then the student in ``OUT`` taught by the labels spread over a kNN graph of the
    first student's features (``-O table=graph``); else one, taught by the labels spread over the
    kNN graphs of the teachers' own features (the mean where they trained only a head). How many
    teachers, how much
    of the pool, how many students and passes are planned from the first teacher's measured
    costs to fit ``--time-budget``; the second of two students is sized again when the first
    ends, from the first's own measured step and set-up (``size_second_round``: two passes, one,
    or fewer images). Each decision is a reason in the student's ``config.yaml`` and is kept in
    ``selftrain.json`` for ``--resume``. In a process group, rank 0's plan is every rank's
    (``agree``) and only rank 0 writes the route's files (``is_main``)."""
    import time

    from .config import TrainConfig
    from .data.labeled import read_training_data, split_seed
    from .errors import DataError
    from .fileio import atomic_write
    from .semi.pool import POOL
    from .semi.selftrain import STUDENT_NOISE

    out = Path(config.output)
    route = out / ROUTE_FILE

    def write_route(**extra: Any) -> None:
        if is_main:
            atomic_write(route, lambda tmp: Path(tmp).write_text(json.dumps({"requested": config.to_dict(), **extra}, indent=2)))

    if not config.resume:
        out.mkdir(parents=True, exist_ok=True)
        write_route()
    saved_route = agree(json.loads(route.read_text()) if is_main and route.is_file() else {})
    saved_plan = saved_route.get("plan")
    teacher_cfg = config.with_updates(method="supervised", unlabeled=None, teacher=None, teachers=None, output=str(out / "teacher"),
                                      unlabeled_limit=None, transductive=False)
    data = read_training_data(config.with_updates(unlabeled=None))
    labeled = len(data.labeled_idx)
    pool = len(data.pool_idx) if config.unlabeled == POOL else None
    if pool is None:
        from .data import load_unlabeled

        pool = len(load_unlabeled(config.unlabeled, on_bad_image=config.on_bad_image))
    if pool < MIN_POOL_RATIO * labeled:
        console.print(f"  [bold]method[/bold] auto: {pool} unlabeled images for {labeled} labeled (< {MIN_POOL_RATIO:g}×): supervised")
        plain = config.with_updates(method="supervised", teachers=None, resume=config.resume and (out / "config.yaml").is_file())
        return train_one(plain, notes={"method": f"auto: {pool} unlabeled images for {labeled} labeled is fewer than "
                                                 f"{MIN_POOL_RATIO:g}× — too few to pay for a teacher and a student: supervised"})
    options = {**STUDENT_NOISE, **{k: str(v) for k, v in (config.method_options or {}).items()}}
    ratio = int(options.get("ratio", 3))
    teacher_budget = None if config.time_budget is None else 0.35 * config.time_budget

    def one_teacher(i: int) -> Path:
        """Teacher ``i`` (from 0): trained unless finished, resumed if stopped."""
        cfg = teacher_cfg if i == 0 else teacher_cfg.with_updates(
            output=str(out / f"teacher-{i + 1}"), seed=config.seed + i, split_seed=split_seed(config))
        run = Path(cfg.output)
        if finished(run):
            console.print(f"  [dim]teacher {run} already trained[/dim]")
        else:
            train_one(cfg.with_updates(time_budget=teacher_budget, resume=config.resume and (run / "checkpoint").exists()))
        return run

    t0 = time.perf_counter()
    teachers = [one_teacher(0)]
    if saved_plan is None:
        left = None if config.time_budget is None else 60.0 * config.time_budget - (time.perf_counter() - t_start)
        costs = _route_costs(teachers[0], data, ratio, _device_of(config))
        plan = plan_route(left, costs, pool, asked=config.teachers, table=options.get("table"))
        if config.unlabeled_limit is not None:
            plan = dataclasses.replace(plan, limit=min(plan.limit or pool, config.unlabeled_limit), why_limit="--unlabeled-limit")
        if config.epochs:
            plan = dataclasses.replace(plan, passes=None, why_passes="")
        plan, costs = agree((plan, costs))
        write_route(plan=dataclasses.asdict(plan), costs=dataclasses.asdict(costs))
    else:
        plan, costs = RoutePlan(**saved_plan), RouteCosts(**saved_route["costs"])
    console.print(f"  [bold]teachers[/bold] {plan.teachers}: {plan.why_teachers}")
    if plan.passes:
        console.print(f"  [bold]student passes[/bold] {plan.passes}: {plan.why_passes}")
    if plan.limit is not None and plan.limit < 100:
        raise DataError(f"--time-budget {config.time_budget:g} leaves time for only {plan.limit} unlabeled images after the teacher "
                        f"({teachers[0]}, a finished supervised run); raise --time-budget, or use that teacher as it is")
    teachers += [one_teacher(i) for i in range(1, plan.teachers)]
    if plan.rounds > 1:
        console.print(f"  [bold]students[/bold] {plan.rounds}: {plan.why_rounds}")
    if plan.why_graph:
        console.print(f"  [bold]table[/bold] {'graph' if plan.graph else 'head'}: {plan.why_graph}")
    taught = {"table": "graph", **options} if plan.graph else options  # -O table=head keeps the teachers' mean
    teacher_spec, final_options = ",".join(str(t) for t in teachers), taught
    first = out / "student-1"
    if plan.rounds > 1:
        if finished(first):
            console.print(f"  [dim]first student {first} already trained[/dim]")
        else:
            spent = time.perf_counter() - t_start
            first_cfg = config.with_updates(
                method="pseudolabel", teacher=teacher_spec, teachers=None, method_options=taught, output=str(first),
                unlabeled_limit=plan.limit, search=False, drop_path_rate=config.drop_path_rate or 0.2, epochs=config.epochs or plan.passes,
                resume=config.resume and (first / "checkpoint").exists(),
                # the first student may use the time left less what the second round was costed at
                time_budget=None if config.time_budget is None else max(0.5, config.time_budget - spent / 60.0 - plan.round_s / 60.0),
            )
            train_one(TrainConfig.from_dict(first_cfg.to_dict()), notes={
                "method": f"the route's first student (of {plan.rounds}): taught by "
                          + ("the labels spread over the kNN graphs of the teachers' own features" if taught.get("table") == "graph"
                             else "the teachers' mean soft targets") + ", with noise"})
        teacher_spec, final_options = str(first), {**options, "table": "graph"}
    spent = time.perf_counter() - t_start
    limit, passes, second = plan.limit, plan.passes, None
    if plan.rounds > 1 and config.time_budget is not None:
        # the second student sized from the first's measured costs, once: --resume reads the decision back
        second = saved_route.get("second")
        if second is None:  # rank 0 sizes it from the first student's metrics; every rank takes its decision
            second = agree(dataclasses.asdict(size_second_round(
                60.0 * config.time_budget - spent, costs, plan, json.loads((first / "metrics.json").read_text()), len(teachers), pool,
                epochs=config.epochs)) if is_main else None)
            write_route(plan=dataclasses.asdict(plan), costs=dataclasses.asdict(costs), second=second)
        console.print(f"  [bold]second student[/bold]: {second['why']}")
        limit, passes = second["limit"], second["passes"]
    student = config.with_updates(
        method="pseudolabel", teacher=teacher_spec, teachers=None, method_options=final_options,
        unlabeled_limit=limit, search=False, drop_path_rate=config.drop_path_rate or 0.2, epochs=config.epochs or passes,
        resume=config.resume and (out / "checkpoint").exists(),
        time_budget=None if config.time_budget is None else max(0.5, config.time_budget - spent / 60.0),
    )
    who = f"a supervised teacher ({teachers[0]}" if len(teachers) == 1 else f"{len(teachers)} supervised teachers ({out}/teacher*"
    notes = {
        "method": (f"auto with {pool} unlabeled images for {labeled} labeled: self-training — {who}, "
                   f"{time.perf_counter() - t0:.0f} s) label the unlabeled images with soft targets "
                   f"({'the labels spread over the kNN graphs of their features' if plan.graph else 'their mean'}) and this student "
                   "learns from them and the labels, with noise (the strong view, dropout, stochastic depth): Noisy Student, one "
                   "round; `headstart selftrain` runs more") if plan.rounds < 2 else
                  (f"auto with {pool} unlabeled images for {labeled} labeled: self-training in two rounds — {who}, "
                   f"{time.perf_counter() - t0:.0f} s) trained; their mean soft targets taught a first student ({first}), and the "
                   "labels spread over a kNN graph of that student's own features teach this one, with noise (the strong view, "
                   "dropout, stochastic depth)"),
        "teachers": plan.why_teachers,
        "unlabeled_limit": plan.why_limit if plan.limit is None or plan.limit >= pool else f"{plan.limit} of {pool} unlabeled images: {plan.why_limit}",
        **({"epochs": plan.why_passes} if plan.passes and not config.epochs else {}),
        **({"rounds": plan.why_rounds} if plan.rounds > 1 else {}),
        # sized again when the first student ended: its images and passes are this student's
        **({"unlabeled_limit": f"{limit or pool} of {pool} unlabeled images: {second['why']}"} if second and limit != plan.limit else {}),
        **({"epochs": second["why"]} if second and not config.epochs else {}),
        **({"table": plan.why_graph} if plan.why_graph else {}),
    }
    result = train_one(TrainConfig.from_dict(student.to_dict()), notes=notes)
    if is_main:
        check = validation_check(out, teachers, device=_device_of(config), on_bad_image=config.on_bad_image)
        _record_check(out, check)
    return result


def validation_check(student: Path, teachers: list[Path], *, device: str, on_bad_image: str = "skip") -> dict[str, Any] | None:
    """The student against its teachers together on the run's validation images: accuracy,
    calibration (ECE, NLL) of each, and whether the student is below them by more than noise
    (McNemar, |z| > 2) — the route's own guard against a student worse than its baseline.
    ``None`` when the run has no validation split (every label trained)."""
    import numpy as np

    from .errors import DataError
    from .predictor import Predictor
    from .report.metrics import calibration, paired_difference
    from .runfolder import rebuild_split

    student_p = Predictor(student, device=device)
    try:
        images, _, _ = rebuild_split(student_p.run, "val", on_bad_image)
    except DataError:
        return None
    x = student_p.images_of(images, num_workers=0)
    classes = student_p.classes
    labels = np.asarray([classes.index(images.classes[i]) for i in images.labels])

    def probs(p: Predictor) -> np.ndarray:
        out = p.proba_tensor(x, batch_size=256)
        return out[:, [p.classes.index(c) for c in classes]]

    mine = probs(student_p)
    theirs = soft_vote(np.stack([probs(Predictor(t, device=device)) for t in teachers]))
    s, t = calibration(mine, labels), calibration(theirs, labels)
    diff = paired_difference(mine.argmax(1) == labels, theirs.argmax(1) == labels)
    worse = diff["beyond_noise"] and diff["z"] < 0
    return {
        "images": int(len(labels)),
        "student": {k: s[k] for k in ("accuracy", "ece", "nll")},
        "teachers": {k: t[k] for k in ("accuracy", "ece", "nll")},
        "student_only_right": diff["a_only"], "teachers_only_right": diff["b_only"], "z": diff["z"],
        "verdict": "below its teachers beyond noise" if worse else ("above its teachers beyond noise" if diff["beyond_noise"] else "within noise of its teachers"),
    }


def _record_check(out: Path, check: dict[str, Any] | None) -> None:
    """The check into ``metrics.json`` (``route``) and the console; a student below its
    teachers is said with what to use instead."""
    from .fileio import atomic_write

    metrics_path = out / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    if check is None:
        metrics["route"] = {"validation": None, "why": "no validation split (every label trained): the student's gain over its "
                                                       "teachers is measured on a labeled test set (`headstart eval`)"}
        console.print("  [dim]route: no validation split, so the student is not compared with its teachers here; "
                      f"`headstart eval {out}` and `headstart eval {out}/teacher` on labeled test images compare them[/dim]")
    else:
        metrics["route"] = {"validation": check}
        s, t = check["student"], check["teachers"]
        line = (f"validation ({check['images']} images): student {s['accuracy']:.4f} (ECE {s['ece']:.3f}), its teachers together "
                f"{t['accuracy']:.4f} (ECE {t['ece']:.3f}): {check['verdict']} (z = {check['z']:.1f})")
        if check["verdict"].startswith("below"):
            console.print(f"  [bold yellow]route[/bold yellow] {line}; the teachers are the better model here: use {out}/teacher "
                          "(or train with --method supervised)")
        else:
            console.print(f"  [bold]route[/bold] {line}")
    atomic_write(metrics_path, lambda tmp: Path(tmp).write_text(json.dumps(metrics, indent=2)))


def _device_of(config: Any) -> str:
    from .engine.prepare import pick_device

    return str(pick_device(config.device))


# -- the unlabeled pieces of one training run (``api._train`` passes its ``_Job``) --------------


def read_unlabeled(job: Any) -> None:
    """``--unlabeled``: the pool read and checked (``semi.pool``), into the job and its data."""
    from .semi.pool import evaluation_sets, read_pool

    config, data = job.config, job.data
    job.pool = read_pool(
        config.unlabeled, full=data.full, pool_idx=data.pool_idx, labeled=data.labeled,
        evaluation=evaluation_sets(config.data, data.val_set if config.val else None, config.on_bad_image), data_spec=config.data,
        transductive=config.transductive, limit=config.unlabeled_limit, seed=config.seed, on_bad_image=config.on_bad_image,
    )
    data.unlabeled, data.pool_record = job.pool.images, job.pool.record()
    if not job.needs.unlabeled_views and "method" not in job.reasons:
        console.print(f"  [dim]--method {config.method} does not learn from the unlabeled images (--method pseudolabel or fixmatch does)[/dim]")


def teacher_targets(job: Any, build_body: Callable[[], Any]) -> None:
    """``--teacher``: the fixed table of class probabilities for the pool, computed once (the
    teacher run's predictions, or label spreading over the frozen body's features) and kept in
    the run folder, so a resumed run reads the same targets."""
    config, folder = job.config, job.folder.path
    pool_x = job.tensors["unlabeled_x"]
    truth = job.pool.truth if job.pool is not None else None
    table = load_table(folder, len(pool_x)) if config.resume else None
    saved = table_info(folder) if table is not None else {}
    members = saved.get("members")
    job.extra.update({key: saved[key] for key in ("graph", "aligned") if saved.get(key)})
    if table is None:
        if config.teacher == PROPAGATE:
            table = _propagated_table(job, build_body())
        elif getattr(job.options, "table", "head") == "graph":
            table, members = _graph_table(job, truth)
        else:
            tables = member_tables(config.teacher, pool_x, job.classes, device=str(job.device))
            table = tables[0] if len(tables) == 1 else torch.from_numpy(soft_vote(torch.stack(tables).numpy())).float()
            if len(tables) > 1:
                members = [table_summary(t, truth) for t in tables]
        if getattr(job.options, "align", False):
            table = _aligned_table(job, table, truth)
        if job.dist.is_main:
            save_table(folder, table, {"teacher": config.teacher, "pool": len(pool_x), "members": members,
                                       **{k: job.extra[k] for k in ("graph", "aligned") if k in job.extra}})
    summary = table_summary(table, truth)
    job.extra["teacher"] = {"source": config.teacher, **summary, **({"members": members} if members else {})}
    right = f", {summary['accuracy']:.1%} right by the hidden labels" if "accuracy" in summary else ""
    together = f" ({len(members)} teachers, {'their graphs joined' if 'graph' in job.extra else 'their mean'})" if members else ""
    console.print(
        f"  [bold]teacher[/bold] {config.teacher}{together}: mean confidence {summary['mean_confidence']:.2f}, "
        f"{summary['share_conf_0.9']:.0%} of the pool at ≥ 0.9{right}"
    )
    if members and "accuracy" in summary:
        each = ", ".join(f"{m['accuracy']:.1%}" for m in members)
        console.print(f"  [dim]each teacher alone: {each} right[/dim]")
    job.setup = dataclasses.replace(job.setup, pool_targets=table)


def _aligned_table(job: Any, table: torch.Tensor, truth: Any) -> torch.Tensor:
    """``-O align`` with a teacher: the table balanced once to the labeled images' class shares
    (``semi.teacher.balance_table``); how right it was before and after goes to the console and
    ``metrics.json`` (``aligned``) where hidden labels are known."""
    shares = job.setup.class_prior  # the labeled training images' class shares, as online alignment uses them
    before = table_summary(table, truth)
    out = balance_table(table, shares)
    after = table_summary(out, truth)
    moved = float((out.argmax(1) != table.argmax(1)).float().mean())
    job.extra["aligned"] = {"shares": [round(float(v), 4) for v in shares], "changed": round(moved, 4),
                            **({"accuracy_before": before["accuracy"]} if "accuracy" in before else {})}
    right = (f": {after['accuracy']:.1%} right by the hidden labels (before {before['accuracy']:.1%})"
             if "accuracy" in after else "")
    console.print(f"  [bold]aligned[/bold] the table to the labeled class shares ({moved:.1%} of the pool changed class){right}")
    return out


def _graph_table(job: Any, truth: Any) -> tuple[torch.Tensor, list[dict] | None]:
    """``-O table=graph``: the labels spread over the kNN graphs of each teacher's own pooled
    features of the labeled and pool images (``semi.propagate.graph_table``); one pass of each
    teacher gives its features and its probabilities, whose mean (what ``table=head`` would
    train on) is summarised beside, so the two can be compared where hidden labels are known."""
    from .semi.propagate import graph_table
    from .semi.teacher import member_features

    config, t = job.config, job.tensors
    per = member_features(config.teacher, t["train_x"], t["unlabeled_x"], job.classes, device=str(job.device))
    out = graph_table([(f_l, f_p) for _, f_l, f_p in per], t["train_y"].numpy(), len(job.classes), seed=config.seed)
    head = per[0][0] if len(per) == 1 else torch.from_numpy(soft_vote(torch.stack([p for p, _, _ in per]).numpy())).float()
    job.extra["graph"] = {"seconds": round(out.seconds, 1), **out.info, "head": table_summary(head, truth)}
    head_right = job.extra["graph"]["head"].get("accuracy")
    table = torch.from_numpy(out.probs).float()
    graph_right = table_summary(table, truth).get("accuracy")
    if head_right is not None and graph_right is not None:
        console.print(f"  [bold]graph[/bold] labels spread over the teachers' features: {graph_right:.1%} right by the hidden labels, "
                      f"the teachers' own predictions {head_right:.1%} ({out.seconds:.0f} s)")
    else:
        console.print(f"  [bold]graph[/bold] labels spread over the teachers' features ({out.seconds:.0f} s)")
    members = [table_summary(p, truth) for p, _, _ in per] if len(per) > 1 else None
    return table, members


def labeled_targets(job: Any) -> None:
    """``--method distill`` with a cached teacher: the teacher's table of the plain labeled
    training images too (in the order the batches index them), so no teacher forward runs
    while the student trains."""
    table = member_tables(job.config.teacher, job.tensors["train_x"], job.classes, device=str(job.device))[0]
    job.setup = dataclasses.replace(job.setup, labeled_targets=table)


def _propagated_table(job: Any, body: Any) -> torch.Tensor:
    """``--teacher propagate``: labels spread from the labeled images over a kNN graph of the
    frozen pretrained body's features of labeled and pool images (``semi.propagate``)."""
    from .semi.propagate import propagate

    config, p, t = job.config, job.plan, job.tensors
    body = body.to(job.device).to(memory_format=torch.channels_last)
    body.freeze(body.num_stages)
    cache = FeatureCache(default_cache_dir() if config.feature_cache else None)
    prepare = Prepare(body.preprocess, p.image_size, job.device)

    def feats(imageset: ImageSet, x: torch.Tensor, what: str) -> torch.Tensor:
        y = torch.zeros(len(x), dtype=torch.long)
        return cached_features(
            body, imageset, x, y, cache=cache, image_size=p.image_size, prepare=prepare, device=job.device, dist=job.dist,
            what=what, show_progress=config.progress,
        )[0]

    labeled = feats(job.data.train_set, t["train_x"], "labeled")
    pool = feats(job.data.unlabeled, t["unlabeled_x"], "unlabeled")
    out = propagate(labeled.numpy(), t["train_y"].numpy(), pool.numpy(), len(job.classes), seed=config.seed)
    job.extra["propagation"] = {"seconds": out.seconds, **out.info}
    return torch.from_numpy(out.probs).float()


SCRATCH_POOL_PASSES = 8
"""Passes over the pool a network without pretrained weights gets by default: measured on
Fashion-MNIST (10 labels per class, 59,900 pool images taught by an ensemble scoring 0.778),
``resnet_small`` distilled for one pass scored 0.758, for eight 0.783."""


def pool_epochs(job: Any) -> tuple[int, int]:
    """For a method with an unlabeled stream: (steps per epoch, epochs). An epoch draws about
    the pool's size of unlabeled images (at least one pass over the labeled ones); without
    --epochs, as many epochs as the plan's optimizer steps fill (at least one; at least
    ``SCRATCH_POOL_PASSES`` for a network trained from scratch)."""
    ratio = job.needs.unlabeled_ratio or 1
    n, world = len(job.data.train_set), job.dist.world_size
    full, rest = divmod(n, job.plan.batch_size)
    labeled_steps = full + (1 if rest >= world else 0)  # as engine.Batches counts them
    per_step = ratio * job.plan.batch_size
    pool = len(job.pool)  # type: ignore[arg-type]
    steps = max(labeled_steps, -(-pool // per_step))
    if job.config.epochs:
        return steps, job.config.epochs
    scratch = not job.model.pretrained and not job.config.init_from
    least = SCRATCH_POOL_PASSES if scratch else 1
    epochs = max(least, round(job.plan.epochs * labeled_steps / steps))
    job.reasons["epochs"] = (
        f"{epochs} epoch(s) of {steps} steps, each drawing ~{steps * per_step} unlabeled images (the pool's {pool}) beside "
        f"{job.plan.batch_size} labeled per step: the plan's {job.plan.epochs * labeled_steps} optimizer steps, at least "
        + (f"{least} passes for a network trained from scratch (one pass leaves it short: benchmarks/results/distill-k10-s0.md)"
           if scratch else "one pass")
    )
    job.resolved["epochs"] = epochs
    return steps, epochs
