"""Knowledge distillation against the formula written out by hand, and the teacher seeing
exactly the student's view."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from headstart.backbones import Preprocess
from headstart.methods import Batch, Setup, create_method
from headstart.methods.distill import kd_loss


def _softmax(z, t):
    e = [math.exp(v / t) for v in z]
    s = sum(e)
    return [v / s for v in e]


def _naive_kd(student, teacher, t):
    """T² · mean over images of Σ_c p_t log(p_t / p_s), at temperature t, loop by loop."""
    total = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist()):
        ps, pt = _softmax(s_row, t), _softmax(t_row, t)
        total += sum(b * math.log(b / a) for a, b in zip(ps, pt))
    return t * t * total / len(student)


def _naive_ce(logits, labels, smoothing):
    out = 0.0
    for row, y in zip(logits.tolist(), labels.tolist()):
        p = _softmax(row, 1.0)
        c = len(row)
        out += -sum(((1 - smoothing) * (j == y) + smoothing / c) * math.log(p[j]) for j in range(c))
    return out / len(logits)


@pytest.mark.parametrize("t", [1.0, 2.0, 4.0, 10.0])
@pytest.mark.parametrize("n,c", [(1, 2), (5, 3), (16, 10)])
def test_kd_loss_is_the_hand_written_formula_with_its_t_squared(t, n, c):
    g = torch.Generator().manual_seed(n * 31 + c)
    s, te = torch.randn(n, c, generator=g) * 3, torch.randn(n, c, generator=g) * 3
    assert kd_loss(s, te, t).item() == pytest.approx(_naive_kd(s, te, t), rel=1e-5, abs=1e-6)
    assert kd_loss(te, te, t).item() == pytest.approx(0.0, abs=1e-6)  # a student equal to its teacher has nothing to learn


class _Spy(nn.Module):
    """A fixed linear teacher that records what it was shown."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 3)
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.lin(x)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.9, 1.0])
@pytest.mark.parametrize("t", [1.0, 4.0])
def test_the_step_loss_is_alpha_kd_plus_one_minus_alpha_ce_over_the_same_views(alpha, t):
    torch.manual_seed(0)
    teacher = _Spy()
    student = nn.Linear(6, 3)
    setup = Setup(num_classes=3, label_smoothing=0.1, teacher=teacher, pool_size=12)
    method = create_method("distill", student, {"temperature": str(t), "alpha": str(alpha), "ratio": "3"}, setup)
    x, y, u = torch.randn(4, 6), torch.tensor([0, 1, 2, 1]), torch.randn(12, 6)
    out = method.step(Batch(images=x, labels=y, views={"unlabeled_weak": u}, extras={"unlabeled_index": torch.arange(12)}))
    both = torch.cat([x, u])
    torch.testing.assert_close(teacher.seen[0], both)  # consistent teaching: the teacher saw the student's very views
    with torch.no_grad():
        s_logits, t_logits = student(both), teacher.lin(both)
    expected = alpha * _naive_kd(s_logits, t_logits, t) + (1 - alpha) * _naive_ce(s_logits[:4], y, 0.1)
    assert out["loss"].item() == pytest.approx(expected, rel=1e-5, abs=1e-6)
    out["loss"].backward()
    assert all(p.grad is None for p in teacher.parameters())  # the teacher never trains


def test_a_cached_teacher_teaches_from_its_tables_and_never_runs():
    torch.manual_seed(1)
    teacher, student = _Spy(), nn.Linear(6, 3)
    table = torch.softmax(torch.randn(20, 3) * 2, 1)
    labeled = torch.softmax(torch.randn(9, 3) * 2, 1)
    setup = Setup(num_classes=3, teacher=teacher, pool_size=20, pool_targets=table, labeled_targets=labeled)
    method = create_method("distill", student, {"temperature": "2", "alpha": "0.6", "ratio": "2", "cached_teacher": "true"}, setup)
    x, y, u, idx = torch.randn(3, 6), torch.tensor([0, 1, 2]), torch.randn(6, 6), torch.tensor([5, 0, 19, 3, 3, 7])
    rows = torch.tensor([8, 2, 4])  # which labeled images the batch holds
    out = method.step(Batch(images=x, labels=y, views={"unlabeled_weak": u}, extras={"unlabeled_index": idx, "labeled_index": rows}))
    assert teacher.seen == []  # no teacher forward while the student trains
    with torch.no_grad():
        s_logits = student(torch.cat([x, u]))
        t_logits = torch.cat([labeled[rows], table[idx]]).log()
        expected = 0.6 * _naive_kd(s_logits, t_logits, 2.0) + 0.4 * _naive_ce(s_logits[:3], y, 0.0)
    assert out["loss"].item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="tables"):
        create_method("distill", student, {"ratio": "2", "cached_teacher": "true"}, Setup(num_classes=3, teacher=teacher, pool_targets=table))


def test_without_a_teacher_or_with_bad_options_distill_refuses():
    with pytest.raises(ValueError, match="needs a teacher"):
        create_method("distill", nn.Linear(6, 3), None, Setup(num_classes=3))
    from headstart.errors import ConfigError

    for bad in ({"alpha": "1.5"}, {"temperature": "0"}, {"view": "odd"}):
        with pytest.raises(ConfigError):
            create_method("distill", nn.Linear(6, 3), bad, Setup(num_classes=3, teacher=nn.Linear(6, 3)))


def test_the_teacher_reads_back_the_pixels_the_student_was_given():
    from headstart.api_distill import TeacherOnStudentInput
    from headstart.engine import Prepare

    student_pre = Preprocess(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    teacher_pre = Preprocess(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append(x)
            return torch.zeros(len(x), 3)

    x = torch.randint(0, 256, (2, 3, 24, 24), dtype=torch.uint8)
    prepared = Prepare(student_pre, 24, torch.device("cpu"))(x)
    TeacherOnStudentInput(Probe(), student_pre, [0, 1, 2], own=teacher_pre, size=24)(prepared)
    torch.testing.assert_close(seen[0], Prepare(teacher_pre, 24, torch.device("cpu"))(x), atol=1e-4, rtol=1e-4)
    TeacherOnStudentInput(Probe(), student_pre, [0, 1, 2], own=None, size=24)(prepared)  # an ensemble takes the pixels
    torch.testing.assert_close(seen[1], x.float(), atol=1e-3, rtol=0)

    class Fixed(nn.Module):
        def forward(self, x):
            return torch.tensor([[1.0, 2.0, 3.0]]).expand(len(x), 3)

    out = TeacherOnStudentInput(Fixed(), student_pre, [2, 0, 1], own=None, size=24)(prepared)
    assert out.tolist() == [[3.0, 1.0, 2.0]] * 2  # the teacher's classes in the student's order
