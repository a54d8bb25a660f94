"""The converged grid (results/evidence/converged/): which glue.py runs the protocol needs, given
the runs already there. ``scripts/reproduce.py`` runs them; scripts/protocol.py holds the
protocol itself (arms, grids, seeds, epochs, the selection rule).

Priority (``Job.tier``, then the order below within a tier): calibration; version 2's extra
r = 2 seed (seed 6 of every r = 2 arm, so that the headline reads seeds 2-6); then, budget by
budget (r = 8, r = 1, AdaLoRA 4->2) and task by task (``TASKS`` order), each arm's sweep and
then its report seeds, so a task's verdict lands before the next task starts; then full
fine-tuning (the ceiling); version 1's ablations (done); RTE last. An arm's seed runs are
planned only once its whole sweep on that task has landed; a derived arm's once the arm it
derives from is selected; a rank-pattern LoRA run at seed s once AdaLoRA's seed-s run landed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scripts.grid.command import flag_of, glue_argv, glue_command, sweep_json
from scripts.protocol import (
    ABLATION_SEEDS,
    ABLATION_TASK,
    ABLATIONS,
    ARM,
    ARMS,
    CALIBRATION_EPOCHS,
    COMPONENTS,
    EPOCHS,
    FULL_LRS,
    LATE_TASKS,
    LRS,
    REPORT_SEEDS,
    SELECTED_SCHEDULE,
    SELECTION_SEED,
    TASKS,
    V1_SEEDS,
    Arm,
    grid_settings,
)

COMMON = [
    "--precision", "bf16", "--group-by-length", "yes",
    "--max-train-samples", "1000000", "--wandb", "disabled",
]  # fmt: skip
LATE = 10  # tier offset of LATE_TASKS
ABLATION_TIER = 6


@dataclass(frozen=True)
class Job:
    stage: str
    name: str
    flags: tuple
    tier: int  # priority: lower runs first

    def argv(self, root: str | Path) -> list[str]:
        return glue_argv(self.flags, output_dir=Path(root) / self.stage, run_name=self.name)

    def command(self, python: str, root: str | Path) -> list[str]:
        return glue_command(self.argv(root), python)


def _job(stage, tier, task, name, seed, flags, epochs, rbar=2) -> Job:
    evals = epochs * 2 if epochs < 4 else epochs  # short schedules: every half epoch
    # full fine-tuning (rbar 0) has no rank; it keeps version 1's --target-r 2, which it ignores,
    # so that its commands stay those of the STS-B runs already made
    base = ["--task", task, "--seed", str(seed), "--epochs", str(epochs), "--evals", str(evals),
            "--target-r", str(rbar or 2)]  # fmt: skip
    return Job(stage, name, tuple(base + COMMON + list(flags)), tier)


def _lr_text(lr: float) -> str:
    return min((x for x in LRS + FULL_LRS if abs(float(x) - lr) < 1e-12), default=f"{lr:g}")


def _alpha_text(scale: float, r: int) -> str:
    return f"{scale * r:g}"


def _selected(root: Path) -> dict:
    """{(task, arm): Selection} from the converged runs present (scripts/report/converged.py)."""
    from scripts.report.converged import selections
    from scripts.report.records import load_runs

    runs = load_runs(root) if root.exists() else []
    return {(task, arm): sel for (_, task, arm), sel in selections(runs).items()}


def _sweep_jobs(arm: Arm, task: str, ep: int, tier: int) -> list[Job]:
    def job(name, flags):
        return _job("sweep", tier, task, name, SELECTION_SEED, [*arm.flags, *flags], ep, arm.rbar)

    s = f"s{SELECTION_SEED}"
    jobs = []
    for lr, scale in grid_settings(arm.grid):
        if scale is None:
            jobs.append(job(f"conv-{task}-{arm.id}-lr{lr}-{s}", ["--lr", lr]))
        else:
            alpha = _alpha_text(scale, arm.lora_r)
            jobs.append(job(f"conv-{task}-{arm.id}-lr{lr}-a{alpha}-{s}",
                            ["--lr", lr, "--lora-alpha", alpha]))  # fmt: skip
    return jobs


def _swept(root: Path, arm: Arm, task: str, sel: dict):
    """``arm``'s selection on ``task`` once its whole sweep has landed (a setting chosen from
    part of a sweep could differ from the one the rule picks), for a derived arm the selection
    of the arm it derives from; else None."""
    if arm.derived_from is not None:
        return _swept(root, ARM[arm.derived_from], task, sel)
    if arm.grid is None:
        return None
    names = [j.name for j in _sweep_jobs(arm, task, 1, 0)]
    if not all((root / "sweep" / f"{n}.json").exists() for n in names):
        return None
    return sel.get((task, arm.id))


def _seeds_for(arm: Arm) -> tuple:
    """Version 2 reports REPORT_SEEDS; r = 2's derived arms ran seeds 1-5 under version 1 (kept,
    planned here so that they count as done)."""
    if arm.rbar == 2 and arm.id in ("lora_rp", "lora_r3"):
        return tuple(sorted(set(V1_SEEDS) | set(REPORT_SEEDS)))
    return REPORT_SEEDS


def _seed_jobs(root: Path, arm: Arm, task: str, ep: int, tier: int, sel: dict) -> list[Job]:
    chosen = _swept(root, arm, task, sel)
    if chosen is None:
        return []
    lr = _lr_text(chosen.setting.lr)
    flags = [*arm.flags, "--lr", lr]
    alpha = ""
    if arm.lora_r is not None or arm.pattern_from:  # LoRA arms: the selected scale alpha / r
        r = arm.lora_r if arm.lora_r is not None else arm.rbar
        alpha = _alpha_text(chosen.scale, r)
        flags += ["--lora-alpha", alpha]
    jobs = []
    for seed in _seeds_for(arm):
        if seed == SELECTION_SEED and arm.grid is not None:
            continue  # the sweep's run
        if arm.pattern_from is not None:
            source = _adalora_run(root, task, ARM[arm.pattern_from], seed, sel)
            if source is None:
                continue  # AdaLoRA's seed-s run first
            name = f"conv-{task}-{arm.id}-lr{lr}-s{seed}"
            extra = ["--rank-pattern-from", str(source)]
        else:
            name = f"conv-{task}-{arm.id}-lr{lr}" + (f"-a{alpha}" if alpha else "") + f"-s{seed}"
            extra = []
        jobs.append(_job("seeds", tier, task, name, seed, flags + extra, ep, arm.rbar))
    return jobs


def _adalora_run(root: Path, task: str, ada: Arm, seed: int, sel: dict) -> Path | None:
    """The result file of AdaLoRA arm ``ada``'s run on ``task`` at seed ``seed`` at its
    selected setting, if it has landed."""
    chosen = sel.get((task, ada.id))
    if chosen is None:
        return None
    stage = "sweep" if seed == SELECTION_SEED else "seeds"
    path = root / stage / f"conv-{task}-{ada.id}-lr{_lr_text(chosen.setting.lr)}-s{seed}.json"
    return path if path.exists() else None


def _ablation_jobs(root: Path, sel: dict, ep: int) -> list[Job]:
    """Version 1's schedule ablations and components on ABLATION_TASK (AdaLoRA 3->2's LR)."""
    ada = sel.get((ABLATION_TASK, "adalora"))
    if ada is None:
        return []
    lr, task, jobs = _lr_text(ada.setting.lr), ABLATION_TASK, []
    for key, values in ABLATIONS.items():
        for value in values:
            if value == SELECTED_SCHEDULE[key]:
                continue  # the main table's AdaLoRA cell is this point
            for seed in ABLATION_SEEDS:
                flags = ["--method", "adalora", "--lr", lr, flag_of(key), value,
                         "--sweep-json", sweep_json({key: value})]  # fmt: skip
                name = f"conv-{task}-adalora-{key}{value}-s{seed}"
                jobs.append(_job("ablations", ABLATION_TIER, task, name, seed, flags, ep))
    for comp, (method, point) in COMPONENTS.items():
        flags = ["--method", method, "--lr", lr]
        for key, value in point.items():
            flags += [flag_of(key), value]
        if point:
            flags += ["--sweep-json", sweep_json(point)]
        for seed in ABLATION_SEEDS:
            jobs.append(_job("ablations", ABLATION_TIER, task, f"conv-{task}-{comp}-s{seed}",
                             seed, flags, ep))  # fmt: skip
    return jobs


def plan(root: str | Path) -> list[Job]:
    """Every job the protocol needs now, in priority order (done ones included: the caller skips
    runs whose result file exists). Jobs that depend on unfinished runs are not listed yet."""
    root = Path(root)
    sel = _selected(root)
    jobs: list[Job] = []
    for task in TASKS + LATE_TASKS:
        late = LATE * (task in LATE_TASKS)
        for arm, flags in (
            ("adalora", ["--method", "adalora", "--lr", "5e-4"]),
            ("lora", ["--method", "lora", "--lora-alpha", "16", "--lr", "5e-4"]),
        ):
            jobs.append(_job("calibration", late, task, f"calib-{task}-{arm}", SELECTION_SEED,
                             flags, CALIBRATION_EPOCHS[task]))  # fmt: skip
        ep = EPOCHS.get(task)
        if ep is None:
            continue
        for arm in ARMS:
            if task not in arm.tasks and task not in LATE_TASKS:
                continue
            if task in LATE_TASKS and arm.rbar != 2:
                continue  # RTE: the r = 2 protocol only
            tier = arm.tier + late
            if arm.grid is not None:
                jobs += _sweep_jobs(arm, task, ep, tier)
            jobs += _seed_jobs(root, arm, task, ep, tier, sel)
        if task == ABLATION_TASK:
            jobs += _ablation_jobs(root, sel, ep)
    return sorted(jobs, key=lambda j: j.tier)  # stable: task by task within a tier
