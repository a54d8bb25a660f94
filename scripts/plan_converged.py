"""The converged grid (results/evidence/converged/): which glue.py runs the protocol needs, given
the runs already there. ``scripts/reproduce.py --protocol converged`` runs them.

The protocol (written before the runs; results/discussion.md states it in words):

1. ``calibration``: one seed, AdaLoRA 3->2 and LoRA r=2 (alpha 16) at LR 5e-4, evaluated every
   epoch for ``CALIBRATION_EPOCHS``; ``EPOCHS[task]`` is then set to where the dev score of both
   has stopped rising (and is written into this file by hand, with the reason, before step 2).
2. ``sweep``: seed 1 at every LR of ``LRS`` for AdaLoRA, and at every (LR, lora_alpha) of
   ``LRS`` x ``LORA_ALPHAS`` for LoRA r=2; full fine-tuning over ``FULL_LRS``.
3. ``seeds``: seeds 1-5 at each arm's selected setting (scripts/report/converged.py: highest
   final dev score of the sweep run; ties: smaller LR, then smaller alpha). Seed 1 is the sweep
   run itself. LoRA with AdaLoRA's ranks (seed s takes the final ranks of AdaLoRA's seed-s run)
   and LoRA r=3 run at LoRA r=2's selected LR and scale alpha / r.
4. ``ablations``: AdaLoRA at its selected setting on ``ABLATION_TASK``, one knob at a time
   (tinit and tfinal fractions, deltaT, schedule shape), 3 seeds. The value the selected setting
   already has (tinit 0.15 T, tfinal 0.45 T, deltaT 10, cubic on STS-B) is not run again: its
   point is the main table's AdaLoRA cell, the same command at seeds 1-5. With them, AdaLoRA's
   parts (``COMPONENTS``): SVD-LoRA r=2 with and without the orthogonal regulariser, AdaLoRA
   without it; 3 seeds, AdaLoRA's selected LR.

Priority (``Job.tier``): calibration; then task by task (``TASKS`` order) the sweep and the seed
runs of AdaLoRA, LoRA r=2 and LoRA with AdaLoRA's ranks, so each task's verdict lands before the
next task starts; then the ablations; then LoRA r=3 and full FT; RTE last. An arm's seed runs
are planned only once its whole sweep on that task has landed.

Every run: MiniLM, real GLUE train/dev, batch 32, the quick preset's per-task values otherwise,
bf16 autocast, length-grouped batches, one evaluation per epoch, the final one in the tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TASKS = ("stsb", "mrpc", "cola", "sst2")  # in priority order; RTE after them (LATE_TASKS)
LATE_TASKS = ("rte",)
CALIBRATION_EPOCHS = {"stsb": 10, "mrpc": 10, "cola": 10, "sst2": 3, "rte": 10}
# Epochs per task, chosen from the calibration runs (None: not chosen yet, so no sweep runs) by
# EPOCH_RULE, from the calibration files (dev main metric x100 after epochs 1-10):
# MRPC accuracy: AdaLoRA 68.4 68.4 70.1 75.5 80.9 82.1 81.6 81.4 81.9 82.1 (e = 6),
#   LoRA 68.1 75.7 78.4 81.4 80.6 82.6 82.6 82.6 82.4 82.4 (e = 6) -> 6;
# STS-B Pearson: AdaLoRA 18.6 77.3 82.8 84.2 84.3 84.8 84.9 85.2 85.5 85.6 (e = 6),
#   LoRA 2.4 8.6 61.3 76.6 81.6 82.6 83.9 84.5 83.5 84.2 (e = 7) -> 7;
# CoLA MCC: AdaLoRA 0.0 0.0 8.2 17.8 18.7 20.8 24.4 25.3 24.9 25.5 (e = 8),
#   LoRA 0.0 2.6 24.8 29.3 26.3 21.9 28.8 27.7 30.1 29.7 (e = 9) -> 9 (both still near the end
#   of the calibration: the still-rising flag will show whether 9 is enough);
# SST-2 accuracy, every half epoch to 3: AdaLoRA 84.4 86.7 86.1 87.5 88.7 88.3 (e = 2.5),
#   LoRA 86.4 87.3 87.8 88.9 88.1 89.2 (e = 2) -> 3 (whole epochs, rounded up).
EPOCH_RULE = (
    "the first epoch e of the calibration runs after which neither method's dev score rises by "
    "more than 1 point (x100) at any later evaluation"
)
EPOCHS: dict[str, int | None] = {"stsb": 7, "mrpc": 6, "cola": 9, "sst2": 3}
LRS = ("2e-4", "5e-4", "1e-3", "2e-3")
LORA_ALPHAS = ("2", "16")  # LoRA r=2 at scale 1 (alpha = r) and scale 8
FULL_LRS = ("2e-5", "5e-5", "1e-4")
SEEDS = (1, 2, 3, 4, 5)
ABLATION_TASK = "stsb"
ABLATION_SEEDS = (1, 2, 3)
# AdaLoRA's parts on ABLATION_TASK at its selected LR (added after STS-B's seed runs: AdaLoRA
# starts fast where both LoRA arms do not; which part does it?): name -> (method, {key: value})
COMPONENTS = {
    "svd_lora": ("svd_lora", {}),  # the SVD form + regulariser at a fixed rank 2, no pruning
    "svd_lora-gamma0": ("svd_lora", {"orth_reg_weight": "0"}),  # the SVD form alone
    "adalora-gamma0": ("adalora", {"orth_reg_weight": "0"}),  # AdaLoRA without the regulariser
}
ABLATIONS = {  # swept key (a glue.py flag with underscores) -> values
    "tinit_frac": ("0.05", "0.15", "0.3"),
    "tfinal_frac": ("0.2", "0.45", "0.6"),
    "delta_t": ("1", "10", "100"),
    "schedule": ("cubic", "linear", "constant"),
}
COMMON = [
    "--target-r", "2", "--precision", "bf16", "--group-by-length", "yes",
    "--max-train-samples", "1000000", "--wandb", "disabled",
]  # fmt: skip


@dataclass(frozen=True)
class Job:
    stage: str
    name: str
    flags: tuple
    tier: int  # priority: lower runs first

    def command(self, python: str, root: str | Path) -> list[str]:
        out = Path(root) / self.stage
        return [python, "experiments/glue.py", *self.flags, "--output-dir", str(out),
                "--run-name", self.name]  # fmt: skip


def _epochs(task: str, stage: str) -> int | None:
    return CALIBRATION_EPOCHS[task] if stage == "calibration" else EPOCHS.get(task)


def _job(stage, tier, task, name, seed, flags, epochs) -> Job:
    evals = epochs * 2 if epochs < 4 else epochs  # short schedules: every half epoch
    base = ["--task", task, "--seed", str(seed), "--epochs", str(epochs), "--evals", str(evals)]
    return Job(stage, name, tuple(base + COMMON + list(flags)), tier)


def _selected(root: Path) -> dict:
    """{(task, arm): Selection} from the converged runs present (scripts/report/converged.py)."""
    from scripts.report.converged import selections
    from scripts.report.records import load_runs

    runs = load_runs(root) if root.exists() else []
    return {(task, arm): sel for (_, task, arm), sel in selections(runs).items()}


def _lr_text(lr: float) -> str:
    return min((x for x in LRS + FULL_LRS if abs(float(x) - lr) < 1e-12), default=f"{lr:g}")


def plan(root: str | Path) -> list[Job]:
    """Every job the protocol needs now, in priority order (done ones included: the caller skips
    runs whose result file exists). Jobs that depend on unfinished runs are not listed yet."""
    root = Path(root)
    sel = _selected(root)
    jobs: list[Job] = []
    for task in TASKS + LATE_TASKS:
        late = task in LATE_TASKS
        ep = CALIBRATION_EPOCHS[task]
        for arm, flags in (
            ("adalora", ["--method", "adalora", "--lr", "5e-4"]),
            ("lora", ["--method", "lora", "--lora-alpha", "16", "--lr", "5e-4"]),
        ):
            jobs.append(_job("calibration", 0 + 10 * late, task, f"calib-{task}-{arm}", 1,
                             flags, ep))  # fmt: skip
        ep = EPOCHS.get(task)
        if ep is None:
            continue
        for lr in LRS:
            jobs.append(_job("sweep", 1 + 10 * late, task, f"conv-{task}-adalora-lr{lr}-s1", 1,
                             ["--method", "adalora", "--lr", lr], ep))  # fmt: skip
            for alpha in LORA_ALPHAS:
                name = f"conv-{task}-lora_r2-lr{lr}-a{alpha}-s1"
                flags = ["--method", "lora", "--lr", lr, "--lora-alpha", alpha]
                jobs.append(_job("sweep", 1 + 10 * late, task, name, 1, flags, ep))
        for lr in FULL_LRS:
            jobs.append(_job("sweep", 5 + 10 * late, task, f"conv-{task}-full-lr{lr}-s1", 1,
                             ["--method", "full", "--lr", lr], ep))  # fmt: skip
        jobs += _seed_jobs(root, task, ep, _swept(root, task, jobs, sel), late)
    return sorted(jobs, key=lambda j: j.tier)  # stable: the order above within a tier


def _is_selected_value(task: str, key: str, value: str) -> bool:
    """Whether ``--<key> <value>`` is what AdaLoRA's selected setting on ``task`` already uses
    (the quick preset's value, else AdaLoRAConfig's default): such a run would repeat the seed
    run of the same seed flag for flag, so the ablation table takes that point from the main
    cell ("(selected setting)") instead of running it again."""
    from adalora.config import AdaLoraConfig
    from experiments.glue import quick_preset

    preset = quick_preset(task, "adalora")
    default = preset[key] if key in preset else AdaLoraConfig.__dataclass_fields__[key].default
    try:
        return float(value) == float(default)
    except (TypeError, ValueError):
        return str(value) == str(default)


def _swept(root: Path, task: str, jobs: list, sel: dict) -> dict:
    """The selections of ``task`` whose arm's whole sweep has landed: a setting chosen from part
    of a sweep could differ from the one the rule picks, so its seed runs wait for the rest."""
    out = {}
    for (t, arm), s in sel.items():
        if t != task or arm not in ("adalora", "lora_r2", "full"):  # the swept arms
            continue
        names = [j.name for j in jobs if j.stage == "sweep" and f"-{task}-{arm}-" in j.name]
        if names and all((root / "sweep" / f"{n}.json").exists() for n in names):
            out[(t, arm)] = s
    return out


def _seed_jobs(root: Path, task: str, ep: int, sel: dict, late: bool) -> list[Job]:
    from scripts.ablate import flag_of, sweep_json  # flags and sweep JSON as ablate.py's

    jobs = []
    ada, lora, full = (
        sel.get((task, "adalora")),
        sel.get((task, "lora_r2")),
        sel.get((task, "full")),
    )
    tier = 10 * late
    if ada is not None:
        lr = _lr_text(ada.setting.lr)
        for seed in SEEDS[1:]:
            jobs.append(_job("seeds", 1 + tier, task, f"conv-{task}-adalora-lr{lr}-s{seed}", seed,
                             ["--method", "adalora", "--lr", lr], ep))  # fmt: skip
        if task == ABLATION_TASK:
            for key, values in ABLATIONS.items():
                for value in values:
                    if _is_selected_value(task, key, value):
                        continue  # the main table's AdaLoRA cell (seeds 1-5) is this point
                    for seed in ABLATION_SEEDS:
                        name = f"conv-{task}-adalora-{key}{value}-s{seed}"
                        flags = ["--method", "adalora", "--lr", lr, flag_of(key), value,
                                 "--sweep-json", sweep_json({key: value})]  # fmt: skip
                        jobs.append(_job("ablations", 3 + tier, task, name, seed, flags, ep))
            for comp, (method, point) in COMPONENTS.items():
                flags = ["--method", method, "--lr", lr]
                for key, value in point.items():
                    flags += [flag_of(key), value]
                if point:
                    flags += ["--sweep-json", sweep_json(point)]
                for seed in ABLATION_SEEDS:
                    name = f"conv-{task}-{comp}-s{seed}"
                    jobs.append(_job("ablations", 3 + tier, task, name, seed, flags, ep))
    if lora is not None:
        lr, alpha = _lr_text(lora.setting.lr), f"{lora.setting.alpha:g}"
        for seed in SEEDS[1:]:
            name = f"conv-{task}-lora_r2-lr{lr}-a{alpha}-s{seed}"
            flags = ["--method", "lora", "--lr", lr, "--lora-alpha", alpha]
            jobs.append(_job("seeds", 1 + tier, task, name, seed, flags, ep))
        r3_alpha = f"{float(alpha) * 3 / 2:g}"  # the same scale alpha / r at r = 3
        for seed in SEEDS:
            name = f"conv-{task}-lora_r3-lr{lr}-a{r3_alpha}-s{seed}"
            flags = ["--method", "lora", "--lora-r", "3", "--lr", lr, "--lora-alpha", r3_alpha]
            jobs.append(_job("seeds", 4 + tier, task, name, seed, flags, ep))
    if lora is not None and ada is not None:
        ada_lr = _lr_text(ada.setting.lr)
        for seed in SEEDS:
            stage = "sweep" if seed == 1 else "seeds"
            source = root / stage / f"conv-{task}-adalora-lr{ada_lr}-s{seed}.json"
            if not source.exists():
                continue  # AdaLoRA's seed-s run first
            name = f"conv-{task}-lora_rp-lr{lr}-s{seed}"
            flags = ["--method", "lora", "--lr", lr, "--lora-alpha", alpha,
                     "--rank-pattern-from", str(source)]  # fmt: skip
            jobs.append(_job("seeds", 1 + tier, task, name, seed, flags, ep))
    if full is not None:
        lr = _lr_text(full.setting.lr)
        for seed in SEEDS[1:]:
            jobs.append(_job("seeds", 5 + tier, task, f"conv-{task}-full-lr{lr}-s{seed}", seed,
                             ["--method", "full", "--lr", lr], ep))  # fmt: skip
    return jobs
