"""Every runner's presets: ``GLUE`` (glue.py) and ``SUMMARIZATION`` (summarization.py), each
name -> (task, method) -> {field: value}. experiments/config.py ``resolve`` puts the flags over
them (a given flag always wins). GLUE's per-task rows are experiments/tasks.py's; the
summarisation data sets' rows are here. A preset value ``NoValue`` is one its source does not
give: the run needs that flag."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from experiments.config import NoValue, RunConfig, SummConfig
from experiments.methods import METHODS
from experiments.tasks import TASKS

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


# ---------------------------------------------------------------- GLUE
GLUE_COMMON = {**BASE, "batch_size": 32, "precision": "fp32"}
PAPER_SEED = 6  # the authors' run_debertav3_<task>.sh (--seed 6)


def glue_paper(task: str, method: str) -> dict:
    """The authors' per-task settings for DeBERTaV3-base (tasks.PaperRow), with their
    scripts' seed. Their learning rate is AdaLoRA's, for every adapter method; neither the paper
    nor the scripts give one for full fine-tuning or BitFit, so those need --lr."""
    row = TASKS[task].paper
    preset = {
        **GLUE_COMMON,
        "model": "microsoft/deberta-v3-base",
        **asdict(row),
        "evals": int(row.epochs),
        "eval_batch_size": 64,
        "precision": "bf16",
        "seed": PAPER_SEED,
    }
    if not METHODS[method].adapters:
        preset["lr"] = NoValue(
            f"the paper preset has no learning rate for --method {method}: the paper and the "
            "authors' scripts give one for the adapter methods only"
        )
    return preset


def glue_quick(task: str, method: str) -> dict:
    """MiniLM on CPU (tasks.QuickRow); schedule fractions follow the paper's (tinit ~ 0.15 T,
    tfinal ~ 0.45 T)."""
    return {
        **GLUE_COMMON,
        "model": "minilm",
        **asdict(TASKS[task].quick),
        "init_r": None,
        "target_r": 8,
        "lr": METHODS[method].quick_lr,
        "tinit": None,
        "tinit_frac": 0.15,
        "tfinal": None,
        "tfinal_frac": 0.45,
        "warmup": 0.06,
        "evals": 2,
        "eval_batch_size": 128,
    }


GLUE = {"quick": glue_quick, "paper": glue_paper}


# ---------------------------------------------------------------- summarisation
# summarization.py's own hyperparameters (their flags: experiments/config.py SummConfig)
SUMM_HP = tuple(
    f.name
    for f in fields(SummConfig)
    if f.metadata.get("kind") == "hp" and f.name not in RunConfig.__dataclass_fields__
)

SUMM_COMMON = {
    **BASE,
    "cls_dropout": None,
    "weight_decay": 0.0,
    **dict.fromkeys(SUMM_HP),  # unset: see each flag's help
}


@dataclass(frozen=True)
class SummPaperRow:
    """One data set of the authors' run_bart_{xsum,cnndailymail}.sh (QingruZhang/AdaLoRA,
    NLG_QA/scripts). Batch = 8 GPUs x 8 (XSum) or x 4 (CNN/DM)."""

    init_r: int
    target_r: int
    batch_size: int
    epochs: int
    tinit: int
    tfinal: int
    max_length: int  # source tokens
    max_target_length: int
    num_beams: int


# fmt: off
SUMM_PAPER = {
    "xsum": SummPaperRow(init_r=12, target_r=8, batch_size=64, epochs=25, tinit=6000,
                     tfinal=25000,  # the paper's table: 50000
                     max_length=768, max_target_length=64, num_beams=8),
    "cnn_dailymail": SummPaperRow(init_r=4, target_r=2, batch_size=32, epochs=15, tinit=5000,
                              tfinal=85000, max_length=1024, max_target_length=160, num_beams=4),
}
# fmt: on


def summ_paper(task: str, method: str) -> dict:
    """The paper's BART-large settings (its summarisation appendix: LR 5e-4 for the adapter
    methods); it gives no learning rate for full fine-tuning or BitFit, so those need --lr."""
    row = SUMM_PAPER[task]
    preset = {
        **SUMM_COMMON,
        "model": "facebook/bart-large",
        **asdict(row),
        "lora_alpha": 32,
        "lr": 5e-4,
        "eval_batch_size": row.batch_size,
        "orth_reg_weight": 0.1,
        "delta_t": 100,
        "warmup": 3000,
        "evals": row.epochs,
        "precision": "bf16",
        "train_split": "train",
        "eval_split": "validation",
    }
    if not METHODS[method].adapters:
        preset["lr"] = NoValue(
            f"the paper preset has no learning rate for --method {method}: the paper gives one "
            "(5e-4) for the adapter methods only"
        )
    return preset


@dataclass(frozen=True)
class SummQuickRow:
    """One data set of the quick preset."""

    max_length: int  # source tokens
    max_target_length: int


# quick: one pass over at most 2000 training examples, 100 evaluation examples, small beams.
# Schedule fractions follow the XSum script (tinit ~ 0.08 T, tfinal ~ 0.3 T).
SUMM_QUICK = {
    "xsum": SummQuickRow(max_length=512, max_target_length=64),
    "cnn_dailymail": SummQuickRow(max_length=512, max_target_length=128),
}


def summ_quick(task: str, method: str) -> dict:
    return {
        **SUMM_COMMON,
        "model": "tiny-bart",
        **asdict(SUMM_QUICK[task]),
        "init_r": None,
        "target_r": 8,
        "lora_alpha": 32,
        "lr": METHODS[method].quick_lr,
        "batch_size": 8,
        "eval_batch_size": 16,
        "epochs": 1,
        "num_beams": 4,
        "orth_reg_weight": 0.1,
        "tinit": None,
        "tinit_frac": 0.08,
        "tfinal": None,
        "tfinal_frac": 0.3,
        "delta_t": 10,
        "warmup": 0.06,
        "evals": 1,
        "precision": "fp32",
        "max_train_samples": 2000,
        "max_eval_samples": 100,
        "train_split": None,
        "eval_split": None,
    }


SUMMARIZATION = {"quick": summ_quick, "paper": summ_paper}
