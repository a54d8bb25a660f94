"""What every runner's presets share (each runner's per-task table is in the runner)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NoValue:
    """A preset's hyperparameter that the preset's source does not give: the run needs its flag
    (experiments/config.py ``resolve`` stops with ``why`` unless the flag is given)."""

    why: str


# Values common to every preset of every runner: the authors' betas (PEFT's defaults too), no
# adapter dropout, the paper's score and schedule, PEFT's rules, all default target matrices,
# every example; LoRA's rank and the budget follow from target_r (methods.plan_budget).
BASE = {
    "grad_accum": 1,
    "beta1": 0.85,
    "beta2": 0.85,
    "lora_dropout": 0.0,
    "score": "triplet",
    "schedule": "cubic",
    "variant": "peft",
    "target_modules": None,
    "max_train_samples": None,
    "max_eval_samples": None,
    "lora_r": None,
    "budget": None,
    "group_by_length": False,
}
