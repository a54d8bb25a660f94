"""The published numbers' settings against references outside the code: the authors' released
scripts and the paper's settings (tests/data/adalora_reference.json, copied from the spec with
the section each value comes from), PEFT's own defaults (read from the installed ``peft``) and
the spec's budget schedule (section 4, written out again here).

Everything goes through public surfaces: ``--dry-run`` output of the runners and the library's
configs and schedule. Without ``peft`` its checks skip (under ``CI=true`` they fail:
tests/conftest.py); without ``../shared`` only the check of the copy against the spec skips.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import pytest

from adalora import AdaLoraConfig, LoraConfig
from adalora.schedule import budget_at
from experiments import glue
from experiments import summarization as summ

REF = json.loads((Path(__file__).parent / "data" / "adalora_reference.json").read_text())
SPEC = Path(__file__).resolve().parents[2] / "shared" / "spec" / "adalora.md"
GLUE = REF["glue_scripts"]
SUMM = REF["summarization_scripts"]
ADAPTER_METHODS = ("adalora", "lora", "svd_lora", "prune_lora")


def dry_run(main, capsys, tmp_path, *argv) -> dict:
    """The configuration a runner's --dry-run prints (offline: models that cannot load are listed
    under "unresolved"; the known ones' module counts still give the budget)."""
    capsys.readouterr()
    assert main([*argv, "--dry-run", "--output-dir", str(tmp_path)]) is None
    out = capsys.readouterr().out
    assert not list(tmp_path.iterdir())  # a dry run writes nothing
    return json.loads(out[out.index("{") :])


def glue_row(task: str) -> dict:
    return {key: v for (_, key), v in zip(GLUE["columns"], GLUE["rows"][task])}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("GLUE_DIR", raising=False)
    monkeypatch.delenv("SUMM_DIR", raising=False)


# --------------------------------------------------------------------------- GLUE paper preset
@pytest.mark.parametrize("task", list(GLUE["rows"]))
def test_glue_paper_preset_is_the_authors_script(task, capsys, tmp_path):
    """Every value of the authors' run_debertav3_<task>.sh, as --preset paper resolves it."""
    cfg = dry_run(glue.main, capsys, tmp_path, "--preset", "paper", "--task", task)
    expected = {**glue_row(task), **GLUE["common"]}  # the seed too: the scripts' --seed 6
    assert {k: cfg[k] for k in expected} == expected
    assert cfg["target_modules"] is None  # all six matrices of every layer
    # the paper's triplet score (spec section 3) and cubic schedule (section 4)
    assert (cfg["score"], cfg["schedule"]) == ("triplet", "cubic")
    if expected["warmup"] >= 1:  # in steps (MRPC's ratio needs T, hence the data)
        assert cfg["warmup_steps"] == expected["warmup"]
    n = REF["glue_budgets"]["n_modules"]
    assert (cfg["n_modules"], cfg["budget"]) == (n, expected["target_r"] * n)


@pytest.mark.parametrize("method", ADAPTER_METHODS)
def test_glue_paper_preset_passes_lr_and_epochs_to_every_adapter_method(method, capsys, tmp_path):
    row = glue_row("cola")
    cfg = dry_run(
        glue.main, capsys, tmp_path, "--preset", "paper", "--task", "cola", "--method", method
    )
    got = {k: cfg[k] for k in ("lr", "epochs", "evals", "lora_alpha", "orth_reg_weight")}
    # Prune LoRA has no orthogonality to regularise: gamma 0 unless given
    gamma = 0.0 if method == "prune_lora" else row["orth_reg_weight"]
    assert got == {
        "lr": row["lr"],
        "epochs": row["epochs"],
        "evals": row["epochs"],
        "lora_alpha": row["lora_alpha"],
        "orth_reg_weight": gamma,
    }


@pytest.mark.parametrize("i", range(3))
def test_glue_paper_budgets(i, capsys, tmp_path):
    """--budget b(T) in {144, 288, 576} on DeBERTaV3-base: average final rank b(T) / 72, and
    LoRA at the matched rank (Table 1: LoRA r=2 beside AdaLoRA's b(T) = 144, r=8 beside 576)."""
    ref = REF["glue_budgets"]
    bT, avg = ref["final_total_rank"][i], ref["average_final_rank"][i]
    argv = ["--preset", "paper", "--task", "rte", "--budget", str(bT)]
    ada = dry_run(glue.main, capsys, tmp_path, *argv)
    assert (ada["budget"], ada["n_modules"], ada["target_r"]) == (bT, ref["n_modules"], avg)
    # b(0) = 1.5 b(T), not the script's init_r (which goes with its own b(T) = 72)
    init_r = math.ceil(ref["init_over_final"] * avg)
    assert ada["init_r"] == init_r
    for how in (["--budget", str(bT), "--method", "prune_lora"], ["--target-r", str(avg)]):
        cfg = dry_run(glue.main, capsys, tmp_path, "--preset", "paper", "--task", "rte", *how)
        assert (cfg["init_r"], cfg["budget"]) == (init_r, bT), how
    lora = dry_run(glue.main, capsys, tmp_path, *argv, "--method", "lora")
    assert (lora["budget"], lora["lora_r"]) == (bT, avg)
    assert lora["lora_r"] == ref["lora_rank_at_matched_budget"].get(str(bT), avg)


def test_glue_paper_preset_explicit_initial_rank_below_the_budget_stops(capsys, tmp_path):
    """--budget 576 (r = 8) with --init-r 2: one line, in a dry run too (AdaLoRA only prunes)."""
    argv = ["--preset", "paper", "--task", "rte", "--budget", "576", "--init-r", "2"]
    with pytest.raises(SystemExit) as e:
        glue.main([*argv, "--dry-run", "--output-dir", str(tmp_path)])
    assert e.value.code == 2
    assert "--budget 576: final average rank 8 " in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("method", ["full", "bitfit"])
@pytest.mark.parametrize("runner", ["glue", "summarization"])
def test_paper_preset_has_no_learning_rate_for_full_or_bitfit(runner, method, capsys, tmp_path):
    """The paper presets' LRs (the authors' GLUE scripts; the paper's summarisation common row)
    are the adapter methods'; the paper and the spec give none for full fine-tuning or BitFit.
    Without --lr: one line; with it: that LR, the preset's other values."""
    main, task, lr, epochs = {
        "glue": (glue.main, ["--task", "cola"], "2e-5", glue_row("cola")["epochs"]),
        "summarization": (summ.main, ["--dataset", "xsum"], "3e-5", SUMM["rows"]["xsum"]["epochs"]),
    }[runner]
    argv = ["--preset", "paper", *task, "--method", method]
    with pytest.raises(SystemExit) as e:
        main([*argv, "--dry-run", "--output-dir", str(tmp_path)])
    assert e.value.code == 2
    assert "--lr: the paper preset has no learning rate" in capsys.readouterr().err
    cfg = dry_run(main, capsys, tmp_path, *argv, "--lr", lr)
    assert (cfg["lr"], cfg["epochs"]) == (float(lr), epochs)


@pytest.mark.parametrize("avg", [2, 8])
def test_initial_rank_is_one_and_a_half_final(avg, capsys, tmp_path):
    """Without --init-r: init_r = 1.5 x the final average rank, rounded up (the paper's
    b(0) = 1.5 b(T); 8 -> 12 as in its Appendix C.1), so b(0) = init_r x n_modules."""
    ref = REF["glue_budgets"]
    cfg = dry_run(
        glue.main, capsys, tmp_path, "--task", "rte", "--model", "minilm", "--target-r", str(avg)
    )
    assert cfg["init_r"] == math.ceil(ref["init_over_final"] * avg)
    assert cfg["budget"] == avg * cfg["n_modules"]


# --------------------------------------------------------------------------- summarisation
@pytest.mark.parametrize("dataset", list(SUMM["rows"]))
@pytest.mark.parametrize("method", ["adalora", "lora"])
def test_summarization_paper_preset_is_the_authors_script(dataset, method, capsys, tmp_path):
    cfg = dry_run(
        summ.main, capsys, tmp_path, "--preset", "paper", "--dataset", dataset, "--method", method
    )
    expected = {**SUMM["common"], **SUMM["rows"][dataset]}
    assert {k: cfg[k] for k in expected} == expected
    assert cfg["target_modules"] is None  # q/k/v/out_proj, fc1, fc2 of every layer
    assert cfg["evals"] == expected["epochs"]  # one evaluation per epoch
    r, n = expected["target_r"], SUMM["n_modules"]
    assert (cfg["n_modules"], cfg["budget"]) == (n, r * n)
    if method == "lora":
        assert cfg["lora_r"] == r


@pytest.mark.parametrize("level", REF["summarization_budget_levels"]["percent"])
def test_summarization_budget_level_is_that_share_of_bart_large(level, capsys, tmp_path):
    """--budget-level L (Table 3's share of parameters): b(T) is the whole total rank whose
    AdaLoRA adapters, r (in + out + 1) per adapted matrix, come nearest to L % of BART-large's
    parameters; both counted here on BART-large built from its config (no weights)."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, BartConfig

    with torch.device("meta"):
        bart = AutoModelForSeq2SeqLM.from_config(BartConfig())  # its defaults: bart-large
    n_params = sum(p.numel() for p in bart.parameters())
    targets = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
    layers = [m for n, m in bart.named_modules() if n.split(".")[-1] in targets]
    assert len(layers) == SUMM["n_modules"]
    per_rank = sum(m.in_features + m.out_features + 1 for m in layers) / len(layers)
    cfg = dry_run(
        summ.main, capsys, tmp_path, "--preset", "paper", "--budget-level", f"{level:.2f}"
    )
    assert abs(cfg["budget"] - level / 100 * n_params / per_rank) <= 0.5


# --------------------------------------------------------------------------- the spec's copy
def _spec_glue_rows(text: str) -> dict:
    """The spec's GLUE script table: task -> the cells' first numbers (the script's values)."""
    section = text.split("## 5.")[1].split("## 6.")[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] in GLUE["spec_task_names"]:
            nums = [re.findall(r"\d+(?:\.\d+)?(?:e-?\d+)?", c) for c in cells[1:]]
            paper = [re.search(r"\(paper[^:]*: ([\d.e-]+)\)", c) for c in cells[1:]]
            rows[GLUE["spec_task_names"][cells[0]]] = (
                [float(x) for x in nums[0][:2]] + [float(n[0]) for n in nums[1:]],
                {i: float(m.group(1)) for i, m in enumerate(paper) if m},
            )
    return rows


@pytest.mark.skipif(not SPEC.is_file(), reason=f"shared data: the spec {SPEC} is absent")
def test_reference_file_is_a_faithful_copy_of_the_spec():
    """tests/data/adalora_reference.json holds what the spec says (table cell by cell)."""
    text = SPEC.read_text()
    rows = _spec_glue_rows(text)
    assert set(rows) == set(GLUE["rows"])
    keys = [key for _, key in GLUE["columns"]]
    for task, (values, paper) in rows.items():
        assert values == pytest.approx(GLUE["rows"][task], rel=1e-12, abs=0), task
        # "(paper: x)" cells: the paper's values; the r column holds two numbers, hence i + 1
        differs = {keys[i + 1]: v for i, v in paper.items()}
        assert differs == GLUE.get("paper_table_differs", {}).get(task, {}), task
    assert "b(T) in {144, 288, 576}" in text and "over 72 matrices" in text
    assert "b(0) = 1.5 b(T)" in text
    summ_text = " ".join(text.split("Summarisation (")[1].split("SQuAD")[0].split())
    assert "alpha 32, gamma 0.1, betas 0.85, deltaT 100, lr 5e-4, 3000 warm-up steps" in summ_text
    assert (
        "XSum: r 12->8, batch 64, 25 epochs, tinit 6000, tfinal 25000 (paper table: 50000), "
        "source 768 / target 64 tokens, 8 beams" in summ_text
    )
    assert (
        "CNN/DailyMail: r 4->2, batch 32, 15 epochs, tinit 5000, tfinal 85000, source 1024 "
        "/ target 160, 4 beams" in summ_text
    )


# --------------------------------------------------------------------------- PEFT's defaults
SHARED_ADALORA_FIELDS = (
    "init_r",
    "target_r",
    "lora_alpha",
    "lora_dropout",
    "tinit",
    "tfinal",
    "deltaT",
    "beta1",
    "beta2",
    "orth_reg_weight",
    "total_step",
)


def _defaults(cls, names) -> dict:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    return {n: fields[n].default for n in names}


def test_adalora_config_defaults_are_peft_s():
    peft = pytest.importorskip("peft")
    ours = _defaults(AdaLoraConfig, SHARED_ADALORA_FIELDS)
    theirs = _defaults(peft.AdaLoraConfig, SHARED_ADALORA_FIELDS)
    assert ours == theirs


def test_lora_config_defaults_are_peft_s():
    peft = pytest.importorskip("peft")
    names = ("r", "lora_alpha", "lora_dropout")
    assert _defaults(LoraConfig, names) == _defaults(peft.LoraConfig, names)


def test_every_preset_uses_peft_s_betas(capsys, tmp_path):
    """The presets' betas are PEFT's defaults (= the authors' 0.85): read from peft, and from a
    dry run of each preset."""
    peft = pytest.importorskip("peft")
    betas = _defaults(peft.AdaLoraConfig, ("beta1", "beta2"))
    for preset in ("quick", "paper"):
        cfg = dry_run(
            glue.main, capsys, tmp_path, "--preset", preset, "--task", "rte", "--model", "minilm"
        )
        assert {k: cfg[k] for k in betas} == betas, preset


# --------------------------------------------------------------------------- the schedule
def spec_budget(t, b0, bT, tinit, tfinal, T):
    """Spec section 4, written out again: b0 while t <= tinit, then the cubic decay truncated
    to int, then bT for t > T - tfinal."""
    if t <= tinit:
        return b0
    if t > T - tfinal:
        return bT
    return int(bT + (b0 - bT) * (1 - (t - tinit) / (T - tfinal - tinit)) ** 3)


@pytest.mark.parametrize(
    "b0, bT, tinit, tfinal, T",
    [
        (216, 144, 600, 1800, 3900),
        (36 * 3, 72, 362, 1085, 2412),
        (18, 12, 0, 0, 7),
        (1152, 72 * 1, 800, 3500, 6700),
        (2304, 1536, 6000, 25000, 70000),
    ],
)
def test_budget_schedule_is_the_spec_s(b0, bT, tinit, tfinal, T):
    """budget_at at every step against the spec's formula (the GLUE and XSum scripts' schedules
    and a converged CoLA run's)."""
    for t in range(T):
        assert budget_at(t, b0, bT, tinit, tfinal, T).budget == spec_budget(
            t, b0, bT, tinit, tfinal, T
        ), t


def test_budget_schedule_matches_peft_s_rank_allocator():
    """PEFT's own RankAllocator.budget_schedule on the same schedule, every step."""
    peft = pytest.importorskip("peft")
    from peft.tuners.adalora.layer import RankAllocator

    b0, bT, tinit, tfinal, T = 3 * 4, 2 * 4, 3, 5, 20
    cfg = peft.AdaLoraConfig(
        init_r=3,
        target_r=2,
        tinit=tinit,
        tfinal=tfinal,
        deltaT=1,
        total_step=T,
        target_modules=["q"],
    )

    class Net:  # RankAllocator counts b0 as the rows of the lora_A parameters, bT per module
        def named_parameters(self):
            import torch

            return [(f"m{i}.lora_A.default", torch.zeros(3, 5)) for i in range(4)]

    alloc = RankAllocator(Net(), cfg, "default")
    assert (alloc.init_bgt, alloc.target_bgt) == (b0, bT)
    for t in range(T):
        assert alloc.budget_schedule(t)[0] == budget_at(t, b0, bT, tinit, tfinal, T).budget, t
