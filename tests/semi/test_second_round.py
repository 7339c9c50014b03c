"""The route's second student is sized when the first ends, from what the first measured: its
passes and images fit the time left (against a brute-force reference), the decision reaches the
student's settings and ``selftrain.json``, and ``--resume`` reads it back instead of sizing again."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from headstart import TrainConfig
from headstart.api_semi import (BUDGET_MARGIN, GRAPH_S_60K, ROUTE_PASSES, SHORT_STUDENT_SHARE, RouteCosts, RoutePlan,
                                size_second_round)

COSTS = RouteCosts(teacher_s=60.0, forward_ips=500.0, step_s=0.40, min_steps=420, unlabeled_per_step=48)
PLAN = RoutePlan(2, None, "two teachers", "every image", 1, "one pass each", 2, "two students", 600.0)


def first_metrics(*, images=60_000, fit=600.0, outside=240.0, epochs=1):
    """A first student's metrics.json as the route reads it."""
    return {"teacher": {"images": images}, "fit_seconds": fit, "seconds": fit + outside, "history": [{"epoch": e + 1} for e in range(epochs)]}


def naive(left, first, teachers=2, pool=60_000, plan=PLAN, costs=COSTS, epochs=None):
    """Every image count tried, passes from the most down: the reference decision."""
    upd, n1 = costs.unlabeled_per_step, first["teacher"]["images"]
    step = first["fit_seconds"] / (len(first["history"]) * math.ceil(n1 / upd))
    per_image = (first["seconds"] - first["fit_seconds"]) / (teachers * n1)
    n = np.arange(0, pool + 1)

    def seconds(n, p):
        return n * per_image + GRAPH_S_60K * (n / 60_000) ** 2 + p * np.ceil(n / upd) * step

    avail, n0 = BUDGET_MARGIN * left, plan.limit or pool
    floor = min(n0, math.ceil(SHORT_STUDENT_SHARE * costs.min_steps) * upd)

    def most(p, least):
        ok = n[(n >= least) & (n <= n0) & (seconds(n, p) <= avail)]
        return int(ok.max()) if len(ok) else least

    if epochs:
        return (n0 if seconds(n0, epochs) <= avail else most(epochs, floor)), epochs, step, per_image
    whole = max(1, round(costs.min_steps / math.ceil(n0 / upd)))  # passes nearest the supervised plan's steps
    for p in range(max(ROUTE_PASSES, whole), 0, -1):  # the most passes over all that fit, though more over fewer images would
        if seconds(n0, p) <= avail:
            return n0, p, step, per_image
    return most(1, floor), 1, step, per_image


LONG = RouteCosts(teacher_s=60.0, forward_ips=500.0, step_s=0.40, min_steps=3_500, unlabeled_per_step=48)
"""A supervised plan of 3,500 steps: one pass over 60,000 images (1,250 steps) is short of it, three come nearest."""


@pytest.mark.parametrize("left", [4000.0, 3000.0, 2000.0, 1300.0, 900.0, 700.0, 500.0, 200.0, 60.0])
@pytest.mark.parametrize("first", [first_metrics(), first_metrics(fit=900.0, outside=400.0), first_metrics(images=40_000, fit=200.0, epochs=2)])
@pytest.mark.parametrize("costs", [COSTS, LONG], ids=["short-plan", "long-plan"])
def test_the_second_student_takes_what_the_first_students_costs_fit_in_the_time_left(left, first, costs):
    got = size_second_round(left, costs, PLAN, first, 2, 60_000)
    n, passes, step, per_image = naive(left, first, costs=costs)
    assert (got.limit or 60_000, got.passes) == (n, passes)
    assert got.step_s == pytest.approx(step) and got.image_s == pytest.approx(per_image) and got.left_s == left
    assert f"{passes} pass(es) over {n}" in got.why and f"{step:.2f} s a step" in got.why


def test_the_sizing_chooses_two_passes_one_pass_or_fewer_images_as_the_time_allows():
    first = first_metrics()  # 0.48 s a step over 1,250 steps; 2 ms an image per teacher pass
    assert first["fit_seconds"] / 1250 == pytest.approx(0.48)
    two = size_second_round(2000.0, COSTS, PLAN, first, 2, 60_000)
    assert (two.limit, two.passes) == (None, 2)  # 120 + 25 + 2 × 600 s = 1,345 s fit in 1,800
    # 1,170 s: two passes over every image do not fit, though they would over ~51,000: one pass over all, ending early
    between = size_second_round(1300.0, COSTS, PLAN, first, 2, 60_000)
    assert (between.limit, between.passes) == (None, 1) and "ends early" in between.why
    plan30 = RoutePlan(2, 30_000, "", "", 1, "", 2, "", 0.0)  # over 30,000 images one pass takes 366 s: it fits in 400
    one = size_second_round(444.0, COSTS, plan30, first_metrics(images=30_000, fit=300.0, outside=120.0), 2, 60_000)
    assert (one.limit, one.passes) == (30_000, 1)
    few = size_second_round(700.0, COSTS, PLAN, first, 2, 60_000)  # 630 s: one pass over every image (745 s) does not fit
    assert few.passes == 1 and 40_000 < few.limit < 60_000 and "as many images as fit" in few.why
    floor = math.ceil(SHORT_STUDENT_SHARE * COSTS.min_steps) * COSTS.unlabeled_per_step
    least = size_second_round(10.0, COSTS, PLAN, first, 2, 60_000)
    assert least.limit == floor and "costed past the time left" in least.why  # never fewer than a quarter of the supervised plan's steps
    # a plan over part of the pool: the second student never takes more than the first had
    part = size_second_round(5000.0, COSTS, RoutePlan(2, 30_000, "", "", 1, "", 2, "", 0.0), first_metrics(images=30_000), 2, 60_000)
    assert (part.limit, part.passes) == (30_000, 2)
    # --epochs fixes the passes; only the images are sized
    fixed = size_second_round(1000.0, COSTS, PLAN, first, 2, 60_000, epochs=3)
    assert fixed.passes == 3 and fixed.limit == naive(1000.0, first, epochs=3)[0] < 60_000


def test_a_pass_shorter_than_the_supervised_plan_is_repeated_up_to_its_steps():
    first = first_metrics()  # 0.48 s a step, 2 ms an image per teacher pass: set-up 120 + 25 s, 600 s a pass
    assert LONG.whole_passes(60_000) == 3 and COSTS.whole_passes(60_000) == 1 and LONG.whole_passes(0) == 1
    assert dataclasses.replace(LONG, min_steps=3_000).whole_passes(60_000) == 2  # 2.4 passes: two come nearest
    three = size_second_round(2200.0, LONG, PLAN, first, 2, 60_000)  # 1,945 s fit in 1,980
    assert (three.limit, three.passes) == (None, 3) and "supervised plan's 3500 steps" in three.why
    two = size_second_round(2100.0, LONG, PLAN, first, 2, 60_000)  # 1,890 s: three do not fit, two (1,345 s) do
    assert (two.limit, two.passes) == (None, 2) and "3 passes do not fit" in two.why and "ends early" in two.why
    assert size_second_round(2100.0, COSTS, PLAN, first, 2, 60_000).passes == 2  # at most ROUTE_PASSES where one pass suffices


def test_the_plans_first_student_makes_at_least_the_supervised_plans_steps():
    from headstart.api_semi import plan_route

    # Fashion-MNIST at 100 labels per class, 60 minutes (the first teacher's measured costs): 64 labeled and 192 unlabeled
    # images a step, so one pass over 59,000 is 308 steps where the supervised plan makes 611 (and the plan costs 611)
    k100 = RouteCosts(teacher_s=291.0, forward_ips=576.0, step_s=1.65, min_steps=611, unlabeled_per_step=192)
    plan = plan_route(54.8 * 60, k100, 59_000, asked=None)
    assert (plan.rounds, plan.limit, plan.passes) == (2, 59_000, 2) and "308 steps, and 2 come nearest the supervised plan's 611" in plan.why_passes
    assert plan.passes * math.ceil(59_000 / 192) >= 611 > math.ceil(59_000 / 192) and "one pass each" not in plan.why_rounds
    # a small pool (sklearn's digits: 1,246 images, 48 a step): 26 steps a pass, 23 passes (598 steps) come nearest 600
    small = plan_route(1200.0, RouteCosts(teacher_s=40.0, forward_ips=600.0, step_s=0.3, min_steps=600, unlabeled_per_step=48), 1246,
                       asked=None)
    assert (small.rounds, small.limit, small.passes) == (2, 1246, 23)
    # 259 steps a pass: two (518) come nearer the plan's 611 than three (777), which would overrun what the plan costed
    assert RouteCosts(291.0, 421.0, 1.65, 611, 192).whole_passes(49_704) == 2
    # at 10 labels per class one pass is already longer than the supervised plan: one pass each, as before
    k10 = plan_route(1500.0, COSTS, 60_000, asked=None)
    assert k10.rounds == 2 and k10.passes == 1 and k10.why_passes == "one pass for each of the two students"
    assert k10.why_rounds.startswith("two students, one pass each, fit")


def test_more_teachers_share_the_first_students_set_up():
    first = first_metrics(outside=600.0)
    assert size_second_round(1000.0, COSTS, PLAN, first, 3, 60_000).image_s == pytest.approx(600.0 / (3 * 60_000))
    assert size_second_round(1000.0, COSTS, PLAN, first, 1, 60_000).image_s == pytest.approx(600.0 / 60_000)


# --- the route: the decision reaches the student and stays for --resume --------------------------------------------------


def _route(monkeypatch, out: Path, shapes_folder, big_pool, *, first: dict, spent: float, resume=False):
    """``self_training`` with its training stubbed: teachers are finished folders, the first
    student writes ``first`` as its metrics, and ``spent`` seconds of the 10 minutes are gone."""
    from headstart import api_semi

    costs = RouteCosts(teacher_s=60.0, forward_ips=500.0, step_s=0.4, min_steps=4, unlabeled_per_step=48)  # two passes' steps
    plan = RoutePlan(2, None, "two teachers", "every image", 1, "one pass each", 2, "two students", 600.0)
    monkeypatch.setattr(api_semi, "_route_costs", lambda *a, **kw: costs)
    monkeypatch.setattr(api_semi, "plan_route", lambda *a, **kw: plan)
    monkeypatch.setattr(api_semi, "validation_check", lambda *a, **kw: None)
    monkeypatch.setattr(api_semi, "_record_check", lambda *a, **kw: None)
    monkeypatch.setattr(api_semi, "finished", lambda run: (Path(run) / "done").exists())
    trained = []

    def train_one(cfg, notes=None):
        run = Path(cfg.output)
        run.mkdir(parents=True, exist_ok=True)
        if run.name == "student-1":
            (run / "metrics.json").write_text(json.dumps(first))
        (run / "done").write_text("")
        trained.append((cfg, notes))

    config = TrainConfig(data=str(shapes_folder), output=str(out), unlabeled=str(big_pool), time_budget=10.0, progress=False,
                         device="cpu", val_fraction=0.3, resume=resume)
    api_semi.self_training(config, train_one, time.perf_counter() - spent)
    return trained


def test_the_route_sizes_its_second_student_from_the_first_and_resume_keeps_the_decision(shapes_folder, big_pool, tmp_path, monkeypatch):
    out = tmp_path / "route"
    # pool 90 images, 48 a step: 2 steps a pass. The first student took 10 s a step: two passes cost 40 s, one 20 s
    first = first_metrics(images=90, fit=20.0, outside=0.0)
    trained = _route(monkeypatch, out, shapes_folder, big_pool, first=first, spent=600.0 - 35.0 / BUDGET_MARGIN)
    student, notes = trained[-1]
    assert [Path(c.output).name for c, _ in trained] == ["teacher", "teacher-2", "student-1", "route"]
    route = json.loads((out / "selftrain.json").read_text())
    second = route["second"]
    assert second["passes"] == 1 and second["limit"] is None and second["step_s"] == pytest.approx(10.0)
    assert 34.0 < BUDGET_MARGIN * second["left_s"] < 35.0  # the time left when the first student ended
    assert student.epochs == 1 and student.unlabeled_limit is None and notes["epochs"] == second["why"]
    assert route["plan"]["rounds"] == 2 and route["costs"]["step_s"] == 0.4  # the plan and its costs stay beside it
    # with more time left, the same measurements buy a second pass
    more = tmp_path / "more"
    student, notes = _route(monkeypatch, more, shapes_folder, big_pool, first=first, spent=0.0)[-1]
    assert student.epochs == 2 and json.loads((more / "selftrain.json").read_text())["second"]["passes"] == 2
    # less: one pass over fewer images (floored at a quarter of the supervised plan's steps: one step of 48 images)
    less = tmp_path / "less"
    student, notes = _route(monkeypatch, less, shapes_folder, big_pool, first=first_metrics(images=90, fit=200.0, outside=0.0),
                            spent=590.0)[-1]
    assert student.epochs == 1 and student.unlabeled_limit == 48 and "costed past the time left" in notes["epochs"]
    assert notes["unlabeled_limit"].startswith("48 of 90 unlabeled images")
    # --resume reads the decision back: the first student's files say otherwise now, and the time is all there
    (out / "route" / "done").unlink(missing_ok=True)
    for name in ("teacher", "teacher-2", "student-1"):
        assert (out / name / "done").exists()
    trained = _route(monkeypatch, out, shapes_folder, big_pool, first=first, spent=0.0, resume=True)
    assert [Path(c.output).name for c, _ in trained] == ["route"]
    assert trained[-1][0].epochs == 1 and json.loads((out / "selftrain.json").read_text())["second"] == second
