"""budget_at / budget_curve against numbers worked out by hand (the paper's cubic schedule,
PEFT 0.21's budget_schedule)."""

from __future__ import annotations

import pytest

from adalora.schedule import Budget, budget_at, budget_curve

# b0 = 48 (init_r 4 x 12 modules), bT = 24, tinit = 2, tfinal = 3, T = 12:
# budgeting phase t = 3..9, its length T - tfinal - tinit = 7.
B0, BT, TINIT, TFINAL, T = 48, 24, 2, 3, 12


def b(t, shape="cubic", deltaT=1):
    return budget_at(t, B0, BT, TINIT, TFINAL, T, deltaT, shape)


@pytest.mark.parametrize("t", [0, 1, 2])
def test_warmup_keeps_b0_and_never_masks(t):
    for shape in ("cubic", "linear", "constant"):
        assert b(t, shape) == Budget(48, False, "warmup")


# cubic: int(24 * (1 - (t - 2) / 7) ** 3 + 24)
#   t=3: 24 * (6/7)^3 = 24 * 216/343 = 15.11 -> 39      t=4: 24 * 125/343 = 8.75 -> 32
#   t=5: 24 * 64/343 = 4.48 -> 28    t=6: 24 * 27/343 = 1.89 -> 25    t=7: 24 * 8/343 = 0.56 -> 24
#   t=9 = T - tfinal: 24
# linear: int(24 * (1 - (t - 2) / 7) + 24)
#   t=3: 24 * 6/7 = 20.57 -> 44     t=4: 24 * 5/7 = 17.14 -> 41     t=8: 24 * 1/7 = 3.43 -> 27
@pytest.mark.parametrize(
    "shape,t,expected",
    [
        ("cubic", 3, 39),
        ("cubic", 4, 32),
        ("cubic", 5, 28),
        ("cubic", 6, 25),
        ("cubic", 7, 24),
        ("cubic", 9, 24),
        ("linear", 3, 44),
        ("linear", 4, 41),
        ("linear", 8, 27),
        ("linear", 9, 24),
        ("constant", 3, 24),
        ("constant", 6, 24),
        ("constant", 9, 24),
    ],
)
def test_budgeting_phase_by_hand(shape, t, expected):
    assert b(t, shape) == Budget(expected, True, "budgeting")


@pytest.mark.parametrize("t", [10, 11, 12, 13])
def test_final_phase_is_bT_and_masks(t):
    for shape in ("cubic", "linear", "constant"):
        assert b(t, shape) == Budget(24, True, "final")


def test_boundaries():
    # t = tinit: still warm-up; t = tinit + 1: first budgeting step
    assert b(TINIT).phase == "warmup" and b(TINIT + 1).phase == "budgeting"
    # t = T - tfinal: last budgeting step, already at bT; t = T - tfinal + 1: final phase
    assert b(T - TFINAL) == Budget(24, True, "budgeting")
    assert b(T - TFINAL + 1) == Budget(24, True, "final")


def test_mask_now_follows_deltaT_in_budgeting_only():
    # deltaT = 4: in the budgeting phase (3..9) masking only at t = 4 and 8; always afterwards
    masks = {t: b(t, deltaT=4).mask_now for t in range(0, 13)}
    assert [t for t, m in masks.items() if m] == [4, 8, 10, 11, 12]
    # the budget itself does not depend on deltaT
    assert [b(t, deltaT=4).budget for t in range(13)] == [b(t).budget for t in range(13)]


def test_larger_schedule_by_hand():
    # b0 = 36, bT = 12, tinit = 10, tfinal = 20, T = 100 -> budgeting length 70
    # t = 11: 24 * (69/70)^3 = 24 * 0.957755 = 22.99 -> 34;  t = 45: 24 * (35/70)^3 = 3 -> 15
    # t = 80: 12;  t = 81: final, 12
    f = lambda t: budget_at(t, 36, 12, 10, 20, 100, 10, "cubic")  # noqa: E731
    assert f(10) == Budget(36, False, "warmup")
    assert f(11) == Budget(34, False, "budgeting")
    assert f(45) == Budget(15, False, "budgeting")
    assert f(50) == Budget(int(24 * (30 / 70) ** 3 + 12), True, "budgeting")  # 13.89 -> 13
    assert f(50).budget == 13
    assert f(80) == Budget(12, True, "budgeting")
    assert f(81) == Budget(12, True, "final")


def test_no_warmup_no_final():
    # tinit = tfinal = 0, T = 4: t = 1..4 budgeting: 24 * (3/4)^3 = 10.125 -> 34, (1/2)^3 -> 27,
    # (1/4)^3 = 0.375 -> 24, 0 -> 24
    assert [budget_at(t, 48, 24, 0, 0, 4).budget for t in (1, 2, 3, 4)] == [34, 27, 24, 24]
    assert budget_at(5, 48, 24, 0, 0, 4) == Budget(24, True, "final")


def test_budget_curve():
    curve = budget_curve(B0, BT, TINIT, TFINAL, T)
    assert [t for t, _ in curve] == list(range(T + 1))
    assert [v for _, v in curve] == [48, 48, 48, 39, 32, 28, 25, 24, 24, 24, 24, 24, 24]
    lin = [v for _, v in budget_curve(B0, BT, TINIT, TFINAL, T, "linear")]
    assert all(x >= y for x, y in zip(lin, lin[1:])) and lin[0] == 48 and lin[-1] == 24
