"""The converged protocol's constants (scripts/protocol.py) against the evidence and the
runner: the epochs per task follow from the committed calibration files by EPOCH_RULE, and the
ablations' "selected value" is what the runner really passes at AdaLoRA's selected setting."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import protocol
from scripts.report.records import load_runs

ROOT = Path(__file__).resolve().parents[1]
CALIBRATION = ROOT / "results" / "evidence" / "converged" / "calibration"


def test_epoch_rule_is_the_last_rise_over_the_previous_evaluation():
    # CoLA's LoRA calibration: the last rise > 1 is epoch 9 (27.7 -> 30.1); reading the rule as
    # "no later score above the score at e + 1" would give 4 (29.3, then at most 30.1)
    lora = list(enumerate([0.0, 2.6, 24.8, 29.3, 26.3, 21.9, 28.8, 27.7, 30.1, 29.7], 1))
    assert protocol.epochs_per_task(lora) == 9
    ada = list(enumerate([0.0, 0.0, 8.2, 17.8, 18.7, 20.8, 24.4, 25.3, 24.9, 25.5], 1))
    assert protocol.epochs_per_task(ada) == 7
    assert protocol.epochs_from_calibration([lora, ada]) == 9
    half = [(0.5, 84.4), (1.0, 86.7), (1.5, 86.1), (2.0, 87.5), (2.5, 88.7), (3.0, 88.3)]
    assert protocol.epochs_per_task(half) == 2.5
    assert protocol.epochs_from_calibration([half]) == 3  # rounded up to a whole epoch
    assert protocol.epochs_per_task([(1, 50.0), (2, 50.5), (3, 51.0)]) == 1  # never rose > 1
    assert protocol.epochs_per_task([(1, 50.0), (2, 51.0)]) == 1  # exactly 1 is not "more"


@pytest.mark.skipif(not CALIBRATION.exists(), reason="no committed calibration runs")
@pytest.mark.parametrize("task", protocol.TASKS)
def test_epochs_follow_from_the_calibration_files(task):
    runs = [r for r in load_runs(CALIBRATION.parent) if r.stage == "calibration" and r.task == task]
    assert len(runs) == 2, task
    evals = [[(epoch, score) for _, epoch, score in r.evals()] for r in runs]
    assert protocol.epochs_from_calibration(evals) == protocol.EPOCHS[task]


def test_selected_schedule_is_what_glue_runs_at(tmp_path):
    """The ablations skip each knob's SELECTED_SCHEDULE value as "already the main cell": it must
    be the value a converged AdaLoRA run resolves to without that flag."""
    out = subprocess.run(
        [
            sys.executable,
            "experiments/glue.py",
            "--task",
            protocol.ABLATION_TASK,
            "--method",
            "adalora",
            "--epochs",
            "7",
            "--target-r",
            "2",
            "--dry-run",
            "--output-dir",
            str(tmp_path),
        ],  # fmt: skip
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    hp = json.loads(out[out.index("{") :])
    for key, value in protocol.SELECTED_SCHEDULE.items():
        got = hp[key]
        assert (float(got) == float(value)) if key != "schedule" else got == value, key


def test_every_arm_is_well_formed():
    ids = [a.id for a in protocol.ARMS]
    assert len(ids) == len(set(ids))
    for arm in protocol.ARMS:
        assert (arm.grid is None) == (arm.derived_from is not None), arm.id
        assert arm.grid is None or arm.grid in protocol.GRID_LRS, arm.id
        if arm.derived_from:
            assert protocol.ARM[arm.derived_from].grid is not None, arm.id
        if arm.pattern_from:
            assert protocol.ARM[arm.pattern_from].flags[1] == "adalora", arm.id
        if arm.grid == "lr_alpha":
            assert arm.lora_r == arm.rbar, arm.id  # plain LoRA at the matched budget
    for a, b in protocol.COMPARISONS:
        assert protocol.ARM[a].rbar == protocol.ARM[b].rbar or b == "lora_r3", (a, b)
    assert set(protocol.HEADLINE) <= set(protocol.COMPARISONS)


def test_sweep_size_and_lrs_read_one_grid_table():
    """The planner, the sweep size and the sweep LRs all come from GRID_LRS."""
    from scripts import plan_converged

    for arm in protocol.ARMS:
        jobs = plan_converged._sweep_jobs(arm, "stsb", 1, 0) if arm.grid else []
        assert protocol.sweep_size(arm.id) == (len(jobs) if arm.grid else None), arm.id
        planned = {float(j.flags[j.flags.index("--lr") + 1]) for j in jobs}
        assert planned == set(protocol.sweep_lrs(arm.id)), arm.id
    assert protocol.sweep_size("lora_r8") == len(protocol.LRS) * len(protocol.LORA_SCALES)
    assert protocol.sweep_size("full") == len(protocol.FULL_LRS)
