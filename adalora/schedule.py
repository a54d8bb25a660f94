"""The budget schedule b(t): total rank kept over all adapted modules at optimizer step t.

Phases, with T = total_step (tinit and tfinal are durations in steps):
    warm-up     t <= tinit                 b = b0, no masking
    budgeting   tinit < t <= T - tfinal    b = bT + (b0 - bT) * (1 - (t - tinit) / D)^p,
                                           D = T - tfinal - tinit,
                                           truncated to int, p = 3 ("cubic", the paper's), 1
                                           ("linear"), or b = bT at once ("constant");
                                           masking when t % deltaT == 0
    final       t > T - tfinal             b = bT, the mask is fixed
"""

from __future__ import annotations

from typing import NamedTuple

# The shapes of the budgeting phase (``shape``): name -> the power p of the decay; None: b = bT
# at once. AdaLoraConfig's ``schedule`` and the runners' --schedule offer exactly these.
SHAPES: dict[str, int | None] = {"cubic": 3, "linear": 1, "constant": None}


class Budget(NamedTuple):
    budget: int  # total rank b(t)
    mask_now: bool  # True when the schedule asks for (re)masking at this step
    phase: str  # "warmup" | "budgeting" | "final"


def budget_at(
    t: int,
    b0: int,
    bT: int,
    tinit: int,
    tfinal: int,
    total_step: int,
    deltaT: int = 1,
    shape: str = "cubic",
) -> Budget:
    if t <= tinit:
        return Budget(b0, False, "warmup")
    if t > total_step - tfinal:
        return Budget(bT, True, "final")
    power = SHAPES[shape]
    if power is None:
        b = bT
    else:
        frac = 1 - (t - tinit) / (total_step - tfinal - tinit)
        # same expression order as PEFT and the authors' code, so int() truncates identically
        b = int((b0 - bT) * (frac**power) + bT)
    return Budget(b, t % deltaT == 0, "budgeting")


def budget_curve(
    b0: int, bT: int, tinit: int, tfinal: int, total_step: int, shape: str = "cubic"
) -> list[tuple[int, int]]:
    """[(t, b(t))] for t = 0..T, e.g. for plots."""
    return [
        (t, budget_at(t, b0, bT, tinit, tfinal, total_step, 1, shape).budget)
        for t in range(total_step + 1)
    ]
