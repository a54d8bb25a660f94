"""The converged section of paper_tables.md (scripts/report/converged.py, tables_converged.py,
figures_converged.py) on a synthetic results/evidence/converged tree: which runs count as
converged, the selection rule, the 5-seed cells (seed 1 from the sweep), Welch intervals and
verdicts, the still-rising flag, the ablations, the empty state, and the short-run section left
untouched by converged files."""

from __future__ import annotations

import shutil
import statistics
from pathlib import Path

import pytest
from scipy import stats as sps

from experiments.results import SCHEMA, write_result
from scripts import make_tables as mt
from scripts.report import converged as C
from scripts.report.document import generate as generate_document
from scripts.report.figures_converged import converged_figure_specs, epoch_band
from scripts.report.records import CONVERGED, SHORT, Run, load_runs, protocol_of
from scripts.report.tables_converged import KNOBS

MODEL = "tiny-bert"
SHORT_MARK = "# Short runs (before convergence)"


def record(
    name,
    evals,
    task="sst2",
    method="adalora",
    seed=1,
    lr=1e-3,
    alpha=32.0,
    lora_r=None,
    status="ok",
    sweep=None,
    rank_pattern=None,
    rank_pattern_from=None,
    epochs=3,
    init_r=3,
    target_r=2.0,
):
    """A GLUE result record whose metrics.evals hold ``evals`` (main metric in [0, 1], one per
    epoch); main_best is the best of them, main_final the last."""
    hp = {
        "lr": lr,
        "lora_alpha": alpha,
        "lora_r": lora_r,
        "init_r": init_r,
        "target_r": target_r,
        "epochs": epochs,
        "tinit_frac": 0.15,
        "tfinal_frac": 0.45,
        "delta_t": 10,
        "schedule": "cubic",
    }
    if sweep is not None:
        hp["sweep"] = sweep
    if rank_pattern_from is not None:
        hp["rank_pattern_from"] = rank_pattern_from
    rows = [
        {"step": 100 * (i + 1), "epoch": float(i + 1), "split": "validation", "acc": v, "loss": 1}
        for i, v in enumerate(evals)
    ]
    return {
        "schema": SCHEMA,
        "run_name": name,
        "kind": "glue",
        "task": task,
        "method": method,
        "variant": "",
        "model": MODEL,
        "model_type": "bert",
        "seed": seed,
        "preset": "quick",
        "n_train": 10,
        "n_eval": {"validation": 10},
        "hyperparameters": hp,
        "budget": None
        if method == "full"
        else {"n_modules": 4, "avg_final_rank": 2.0, "curve": [[0, 12], [50, 8]]},
        "params": {"trainable": 100, "final_adapter": 80, "total": 10000},
        "rank_pattern": rank_pattern,
        "metrics": {
            "main": "acc",
            "table_uses": "best",
            "primary_split": "validation",
            "evals": rows,
            "final": {"validation": {"acc": evals[-1]}},
            "best": {"acc": max(evals)},
            "main_final": evals[-1],
            "main_best": max(evals),
        },
        "status": status,
        "wall_time_s": 1.0,
        "versions": {},
        "hardware": {},
        "command": "python experiments/glue.py",
        "created": "2024-01-01T00:00:00Z",
    }


def put(res: Path, stage: str, rec: dict) -> None:
    write_result(rec, res / "evidence" / "converged" / stage)


def curve(final: float, rise: float = 0.1) -> list:
    """Three epochs ending at ``final`` (x100), the last gaining ``rise`` (x100) on the one
    before."""
    return [(final - 10) / 100, (final - rise) / 100, final / 100]


RP = {
    f"bert.encoder.layer.{i}.attention.self.{m}": 1 + (i + j) % 3
    for i in range(2)
    for j, m in enumerate(("query", "value"))
}
# Final scores of seeds 1-5 per arm on SST-2 (seed 1 of AdaLoRA, LoRA r=2 and full FT comes
# from the sweep).
ADA = [80.0, 81.0, 82.0, 83.0, 84.0]
LORA2 = [70.0, 72.0, 71.0, 73.0, 74.0]
LORA3 = [75.0, 76.0, 77.0, 78.0, 79.0]
LORARP = [79.0, 83.0, 81.0, 85.0, 80.0]
FULL = [90.0, 91.0, 89.0, 90.5, 90.0]


def write_tree(res: Path) -> None:
    """calibration, sweep, seeds and ablations on SST-2; a second task (CoLA) where AdaLoRA is
    worse than LoRA r=2 and the other arms did not run."""
    # calibration: one seed each, every epoch
    put(res, "calibration", record("cal-ada", [0.6, 0.75, 0.81, 0.82], lr=1e-3, epochs=4))
    put(res, "calibration", record("cal-lora", [0.7, 0.8, 0.82, 0.82], "sst2", "lora", lora_r=2))
    # sweep, seed 1. AdaLoRA: 2e-3 wins (80); 1e-3 has the best *best* eval (95) but a lower
    # final one (60): the rule reads the final evaluation.
    for lr, final in ((2e-4, 50.0), (5e-4, 70.0), (1e-3, 60.0), (2e-3, ADA[0])):
        evals = [0.95, 0.7, final / 100] if lr == 1e-3 else curve(final)
        put(res, "sweep", record(f"sw-ada-{lr:g}", evals, lr=lr, sweep={"lr": lr}))
    # LoRA r=2: lr x alpha; (1e-3, 16) wins with 70; (2e-3, 2) ties with it -> the smaller LR
    lora = {(2e-4, 2): 60, (2e-4, 16): 61, (5e-4, 2): 65, (5e-4, 16): 66, (1e-3, 2): 69}
    lora |= {(1e-3, 16): LORA2[0], (2e-3, 2): LORA2[0], (2e-3, 16): 40}
    for (lr, alpha), final in lora.items():
        put(
            res,
            "sweep",
            record(
                f"sw-lora-{lr:g}-a{alpha}",
                curve(final),
                method="lora",
                lr=lr,
                alpha=float(alpha),
                lora_r=2,
                sweep={"lr": lr, "lora_alpha": alpha},
            ),
        )
    for lr, final in ((2e-5, 85.0), (5e-5, FULL[0])):
        put(res, "sweep", record(f"sw-full-{lr:g}", curve(final), method="full", lr=lr))
    # seeds 2-5 (seed 1: the sweep run) at the selected settings
    for s in range(2, 6):
        put(res, "seeds", record(f"ada-s{s}", curve(ADA[s - 1]), seed=s, lr=2e-3, rank_pattern=RP))
        put(
            res,
            "seeds",
            record(
                f"lora2-s{s}",
                curve(LORA2[s - 1]),
                method="lora",
                seed=s,
                lr=1e-3,
                alpha=16.0,
                lora_r=2,
            ),
        )
        put(res, "seeds", record(f"full-s{s}", curve(FULL[s - 1]), method="full", seed=s, lr=5e-5))
    # a LoRA r=2 seeds run at another setting: counted, not averaged
    put(res, "seeds", record("lora2-off", curve(99.0), method="lora", lr=5e-4, alpha=16, lora_r=2))
    # seeds 1-5 of the derived arms: LoRA r=3 at the same scale (alpha 24 / 3 = 16 / 2) and
    # still rising (+3 per run at the last epoch, seed std 1.58); rank-pattern LoRA
    for s in range(1, 6):
        put(
            res,
            "seeds",
            record(
                f"lora3-s{s}",
                curve(LORA3[s - 1], rise=3.0),
                method="lora",
                seed=s,
                lr=1e-3,
                alpha=24.0,
                lora_r=3,
            ),
        )
        put(
            res,
            "seeds",
            record(
                f"lorarp-s{s}",
                curve(LORARP[s - 1]),
                method="lora",
                seed=s,
                lr=1e-3,
                alpha=16.0,
                lora_r=2,
                rank_pattern_from="results/evidence/converged/seeds/ada-s2.json",
            ),
        )
    # ablations: 3 seeds per value
    for knob, values in (("tinit_frac", (0.1, 0.3)), ("schedule", ("linear", "cubic"))):
        for v in values:
            for s in (1, 2, 3):
                put(
                    res,
                    "ablations",
                    record(
                        f"abl-{knob}-{v}-s{s}",
                        curve(70.0 + s + (5 if v in (0.3, "linear") else 0)),
                        seed=s,
                        lr=2e-3,
                        sweep={knob: v},
                    ),
                )
    # component ablations: SVD-LoRA r=2 (nothing pruned) and AdaLoRA without the regulariser
    for s in (1, 2, 3):
        put(res, "ablations", record(f"abl-svd-s{s}", [0.6 + s / 100, 0.7, 0.8], seed=s,
                                     method="svd_lora", lr=2e-3))  # fmt: skip
        put(res, "ablations", record(f"abl-gamma0-s{s}", curve(75.0), seed=s, lr=2e-3,
                                     sweep={"orth_reg_weight": 0}))  # fmt: skip
    # CoLA: AdaLoRA (50.0, 50.2, ..., 50.5) worse than LoRA r=2 (60, 62, ..., 65)
    put(res, "sweep", record("c-sw-ada", curve(50.0), task="cola", lr=1e-3, sweep={"lr": 1e-3}))
    put(res, "sweep", record("c-sw-lora", curve(60.0), task="cola", method="lora", lora_r=2))
    for s in range(2, 7):  # all five report seeds: the family-wise rule reads this cell
        put(res, "seeds", record(f"c-ada-s{s}", curve(50.0 + s / 10), task="cola", seed=s))
        lora = record(f"c-lora-s{s}", curve(60.0 + s), task="cola", method="lora", seed=s, lora_r=2)
        put(res, "seeds", lora)


@pytest.fixture
def tree(tmp_path):
    res = tmp_path / "results"
    write_tree(res)
    return res


def generate(tmp_path, res, *extra) -> str:
    out = tmp_path / "paper_tables.md"
    assert mt.main(["--out", str(out), *extra], results_root=res) == 0
    return out.read_text()


def rows_of(text: str) -> list:
    return [
        [c.strip() for c in line[2:-2].split(" | ")]
        for line in text.splitlines()
        if line.startswith("| ") and line.endswith(" |")
    ]


def section(text: str, heading: str) -> str:
    """The text from ``heading`` to the next heading of the same or a higher level."""
    level = heading.split(" ")[0]
    body = text.split(heading + "\n", 1)[1]
    out = []
    for line in body.splitlines():
        if line.startswith("#") and len(line.split(" ")[0]) <= len(level):
            break
        out.append(line)
    return "\n".join(out)


def table(text: str, heading: str) -> dict:
    """{(task, first cell after task ...): row} of the first table under ``heading``, as
    {header name: cell} dicts keyed by the row's task."""
    rows = rows_of(section(text, heading))
    header = rows[0]
    return [dict(zip(header, r)) for r in rows[1:]]


def conv_runs(res: Path) -> list:
    return [r for r in load_runs(res / "evidence") if r.converged]


# ---------------------------------------------------------------- classification


def test_protocol_of_paths(tmp_path):
    ev = tmp_path / "results" / "evidence"
    f = ev / "converged" / "seeds" / "x.json"
    assert protocol_of(f, ev) == (CONVERGED, "seeds")
    assert protocol_of(f, ev / "converged") == (CONVERGED, "seeds")
    assert protocol_of(f, ev / "converged" / "seeds") == (CONVERGED, "seeds")
    assert protocol_of(ev / "converged" / "x.json", ev) == (CONVERGED, "")
    assert protocol_of(ev / "short" / "x.json", ev) == (SHORT, "")
    # a folder named "converged" above the results root does not count
    other = tmp_path / "converged" / "evidence"
    assert protocol_of(other / "short" / "x.json", other) == (SHORT, "")


def test_load_runs_sets_protocol_and_stage(tree):
    runs = load_runs(tree / "evidence")
    stages = {r.stage for r in runs if r.converged}
    assert stages == {"calibration", "sweep", "seeds", "ablations"}
    assert all(r.protocol == CONVERGED for r in runs)
    r = next(r for r in runs if r.name == "sw-ada-0.001")
    assert r.final_eval == pytest.approx(60.0) and r.score == pytest.approx(95.0)
    assert [e[1] for e in r.evals()] == [1.0, 2.0, 3.0]


def test_converged_run_in_another_precision_is_refused(tmp_path):
    """A converged file whose precision_used differs from the precision its command asked (bf16
    asked, fp32 on a CPU without native bf16) is not a protocol run: one BadInput naming the
    file and the fix, or left out with skip; a short run so recorded is read as it is."""
    from experiments.validation.base import BadInput

    res = tmp_path / "results"
    ok, bad = record("s-ok", [0.5, 0.6, 0.7]), record("s-fp32", [0.5, 0.6, 0.7])
    ok["hyperparameters"].update(precision="bf16", precision_used="bf16")
    bad["hyperparameters"].update(precision="bf16", precision_used="fp32")
    put(res, "seeds", ok)
    put(res, "seeds", bad)
    with pytest.raises(BadInput) as e:
        load_runs(res / "evidence")
    assert e.value.flag.endswith("converged/seeds/s-fp32.json")
    assert "precision_used is 'fp32' where its command asked 'bf16'" in e.value.problem
    assert "move it out of the converged folder" in e.value.fix
    skipped = []
    assert [r.name for r in load_runs(res / "evidence", skipped.append)] == ["s-ok"]
    assert len(skipped) == 1
    write_result(bad, res / "evidence" / "short")
    assert "s-fp32" in [r.name for r in load_runs(res / "evidence" / "short")]


def test_arms():
    def run(**kw):
        return Run.from_record(record("x", [0.5], **kw))

    assert C.arm_of(run()) == "adalora"
    assert C.arm_of(run(method="lora", lora_r=2)) == "lora_r2"
    assert C.arm_of(run(method="lora", lora_r=3)) == "lora_r3"
    assert C.arm_of(run(method="lora", lora_r=2, rank_pattern_from="a.json")) == "lora_rp"
    assert C.arm_of(run(method="full")) == "full"
    assert C.arm_name("lora_rp") == "LoRA (AdaLoRA's ranks)" and C.arm_name("lora_r8") == "LoRA r=8"
    # an ablation variant is an arm of its own, never mixed into AdaLoRA's cell
    tagged = Run.from_record({**record("x", [0.5]), "variant": "schedule=linear"})
    assert C.arm_of(tagged) == "adalora:schedule=linear"
    assert C.arm_name(C.arm_of(tagged)) == "AdaLoRA 3→2 schedule=linear"


# ---------------------------------------------------------------- selection


def point(lr, alpha, score):
    st = C.Stats(values=[score]) if score is not None else C.Stats()
    return C.SweepPoint(C.Setting(lr, alpha), [], st)


def test_selection_rule_ties():
    # the highest score wins
    assert C.select([point(1e-3, 2, 80), point(5e-4, 2, 81)]).setting == C.Setting(5e-4, 2)
    # tie -> smaller LR
    pts = [point(2e-3, 2, 81), point(1e-3, 16, 81), point(2e-4, 2, 70)]
    assert C.select(pts).setting == C.Setting(1e-3, 16)
    # tie at the same LR -> smaller alpha
    assert C.select([point(1e-3, 16, 81), point(1e-3, 2, 81)]).setting == C.Setting(1e-3, 2)
    # unscored points never win; none scored -> no selection
    assert C.select([point(1e-3, 2, None), point(2e-3, 2, 50)]).setting.lr == 2e-3
    assert C.select([point(1e-3, 2, None)]) is None


def test_sweep_table_names_an_exact_tie():
    from scripts.report.tables_converged import _selected_text

    pts = [point(2e-4, None, 86.0), point(5e-4, None, 88.88), point(1e-3, None, 87.0)]
    pts.append(point(2e-3, None, 88.88))
    best = C.select(pts)
    best.selected = True
    assert best.setting.lr == 5e-4
    assert _selected_text(best, pts) == (
        "selected (tied with lr=0.002: the rule takes the smaller LR, then alpha)"
    )
    assert _selected_text(pts[3], pts) == ""  # the tied loser carries no flag
    # a tie at a grid edge keeps both notes
    edge = [point(2e-4, None, 90.0), point(1e-3, None, 90.0)]
    edge[0].selected = True
    assert _selected_text(edge[0], edge) == (
        "selected (lowest LR of the grid; tied with lr=0.001: the rule takes the smaller LR, "
        "then alpha)"
    )


def test_grid_edge_is_judged_against_the_planned_grid():
    """A sweep still landing: its best LR so far is no edge unless it is one of the planned
    grid's ends (scripts/protocol.py LRS for a swept adapter arm)."""
    from scripts.report.tables_converged import _selected_text

    pts = [point(2e-4, None, 86.8), point(5e-4, None, 88.0)]  # 2 of LRS's 4 landed
    pts[1].selected = True
    assert C.grid_edge(pts[1], pts, "adalora_12to8") is None
    assert _selected_text(pts[1], pts, (2, 4), "adalora_12to8") == (
        "selected (provisional: 2 of 4 settings in)"
    )
    assert C.grid_edge(pts[0], pts, "adalora_12to8") == "lowest LR"
    # the planned grid's top landed and won: an edge, partial or not
    top = [*pts, point(2e-3, None, 90.0)]
    assert C.grid_edge(top[2], top, "adalora_12to8") == "highest LR"
    # an arm without a planned grid: the landed LRs are the grid
    assert C.grid_edge(pts[1], pts) == "highest LR"


def test_selections_from_the_sweep(tree):
    runs = conv_runs(tree)
    sels = C.selections(runs)
    key = (MODEL, "sst2")
    # AdaLoRA: the final evaluation decides (1e-3 has the best eval, 95, but ends at 60)
    assert sels[(*key, "adalora")].setting == C.Setting(2e-3)
    # LoRA r=2: (1e-3, 16) and (2e-3, 2) tie at 70 -> the smaller LR
    assert sels[(*key, "lora_r2")].setting == C.Setting(1e-3, 16.0)
    assert sels[(*key, "lora_r2")].scale == pytest.approx(8.0)
    assert sels[(*key, "full")].setting == C.Setting(5e-5)
    # derived arms: LoRA r=2's LR and alpha / r
    for arm in ("lora_r3", "lora_rp"):
        sel = sels[(*key, arm)]
        assert (sel.setting.lr, sel.scale, sel.source) == (1e-3, 8.0, "lora_r2")


def test_seed_cells_pool_the_sweep_seed(tree):
    cells = C.seed_cells(conv_runs(tree), reading="v1")
    key = (MODEL, "sst2")
    ada = cells[(*key, "adalora")]
    assert ada.seed1_from_sweep and [r.seed for r in ada.runs] == [1, 2, 3, 4, 5]
    assert ada.stats.values == pytest.approx(ADA)
    lora = cells[(*key, "lora_r2")]
    assert lora.stats.values == pytest.approx(LORA2) and lora.other_settings == 1
    # LoRA r=3: alpha 24 / r 3 = LoRA r=2's 16 / 2
    assert cells[(*key, "lora_r3")].stats.values == pytest.approx(LORA3)
    assert cells[(*key, "lora_rp")].stats.values == pytest.approx(LORARP)
    assert cells[(*key, "full")].stats.mean == pytest.approx(statistics.fmean(FULL))


# ---------------------------------------------------------------- Welch and verdicts


def test_welch_against_scipy():
    w = C.welch(ADA, LORARP)
    v1, v2 = statistics.variance(ADA) / 5, statistics.variance(LORARP) / 5
    df = (v1 + v2) ** 2 / (v1**2 / 4 + v2**2 / 4)
    half = sps.t.ppf(0.975, df) * (v1 + v2) ** 0.5
    diff = statistics.fmean(ADA) - statistics.fmean(LORARP)
    assert (w.diff, w.df) == (pytest.approx(diff), pytest.approx(df))
    assert (w.lo, w.hi) == (pytest.approx(diff - half), pytest.approx(diff + half))
    ci = sps.ttest_ind(ADA, LORARP, equal_var=False).confidence_interval(0.95)
    assert (w.lo, w.hi) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert w.verdict == "level" and w.lo < 0 < w.hi


def test_verdict_words():
    assert C.welch(ADA, LORA2).verdict == "better"
    assert C.welch(LORA2, ADA).verdict == "worse"
    assert C.welch(ADA, LORARP).verdict == "level"
    # identical seeds on both sides: no spread, the interval is the difference itself
    assert C.welch([1.0, 1.0], [0.0, 0.0]).verdict == "better"
    assert C.welch([1.0, 1.0], [1.0, 1.0]).verdict == "level"
    few = C.welch([80.0], LORA2)
    assert few.verdict == "-" and C.verdict_text(few) == "- (n < 2: n=1 vs 5)"


def test_still_rising_flag(tree):
    cells = C.seed_cells(conv_runs(tree), reading="v1")
    lora3 = cells[(MODEL, "sst2", "lora_r3")]
    assert lora3.rise == pytest.approx(3.0)
    assert lora3.last_std == pytest.approx(statistics.stdev(LORA3)) and lora3.rising
    ada = cells[(MODEL, "sst2", "adalora")]
    assert ada.rise == pytest.approx(0.1) and not ada.rising
    # one run: no seed std, no flag
    one = C.Cell(runs=[], rise=5.0, last_std=None)
    assert not one.rising


# ---------------------------------------------------------------- the document


def test_converged_tables(tmp_path, tree):
    text = generate(tmp_path, tree)
    assert text.index("# Converged runs") < text.index(SHORT_MARK)
    assert text.index("## Discussion") < text.index("# Converged runs")
    main = {r["task"]: r for r in table(text, "## Converged: GLUE dev at the final evaluation")}
    sst2 = main["SST-2"]
    # version 2: the report seeds (2-6) only, never the sweep's seed-1 run that chose the LR
    assert sst2["AdaLoRA 3→2"] == f"82.50 ± {statistics.stdev(ADA[1:]):.2f} (n=4)"
    assert sst2["LoRA r=2"] == f"72.50 ± {statistics.stdev(LORA2[1:]):.2f} (n=4)"
    assert sst2["LoRA r=3"] == (
        f"77.50 ± {statistics.stdev(LORA3[1:]):.2f} (n=4) still rising (+3.00 > std 1.29)"
    )
    assert sst2["epochs"] == "3"
    cola = [62.0, 63.0, 64.0, 65.0, 66.0]  # seed 1 (the sweep) left out
    # CoLA's sweeps hold one setting each: a selection from a partial grid says it is provisional
    assert main["CoLA"]["LoRA r=2"] == (
        f"64.00 ± {statistics.stdev(cola):.2f} (n=5) [sweep 1 of 8 settings in: provisional]"
    )
    assert main["CoLA"]["LoRA r=3"] == "-"
    comp = table(text, "## Converged: AdaLoRA's parts (component ablations)")
    rows = [(r["method"], r["setting"], r["after epoch 1"], r["final"]) for r in comp]
    assert rows[0][:2] == ("AdaLoRA 3→2", "main") and rows[1][:2] == ("LoRA r=2", "main")
    assert ("AdaLoRA 3→2", "orth_reg_weight=0", "65.00 ± 0.00 (n=3)", "75.00 ± 0.00 (n=3)") in rows
    assert ("SVD-LoRA", "(as selected)", "62.00 ± 1.00 (n=3)", "80.00 ± 0.00 (n=3)") in rows
    # the schedule knob tables keep only schedule knobs: no orth_reg_weight table
    assert "(`orth_reg_weight`)" not in text
    ranks = {r["task"]: r for r in table(text, "## Converged: rank check of the same seeds")}
    # every AdaLoRA seed above every LoRA r=2 seed: 16 of 16 pairs, exact p = 2 / C(8, 4)
    assert ranks["SST-2"]["AdaLoRA 3→2 − LoRA r=2"] == "16/16 pairs higher, p=0.029 (n=4 vs 4)"
    assert ranks["CoLA"]["AdaLoRA 3→2 − LoRA r=2"].startswith("0/25 pairs higher")
    assert ranks["CoLA"]["AdaLoRA 3→2 − LoRA (AdaLoRA's ranks)"] == "-"
    verdicts = {
        r["task"]: r
        for r in table(text, "## Converged: AdaLoRA against the other arms (Welch 95% intervals)")
    }
    better = C.welch(ADA[1:], LORA2[1:])
    assert verdicts["SST-2"]["AdaLoRA 3→2 − LoRA r=2"] == (
        f"+10.00 [{better.lo:+.2f}, {better.hi:+.2f}], df={better.df:.1f}: better (n=4 vs 4)"
    )
    assert verdicts["SST-2"]["AdaLoRA 3→2 − LoRA (AdaLoRA's ranks)"].endswith("level (n=4 vs 4)")
    assert verdicts["CoLA"]["AdaLoRA 3→2 − LoRA r=2"].endswith(": worse (n=5 vs 5)")
    assert verdicts["CoLA"]["AdaLoRA 3→2 − LoRA (AdaLoRA's ranks)"] == "- (n < 2: n=5 vs 0)"
    # LoRA r=3 (same initial rank) gets a verdict column too, but not a headline row
    vs_r3 = C.welch(ADA[1:], LORA3[1:])
    assert verdicts["SST-2"]["AdaLoRA 3→2 − LoRA r=3"] == (
        f"+5.00 [{vs_r3.lo:+.2f}, {vs_r3.hi:+.2f}], df={vs_r3.df:.1f}: {vs_r3.verdict} (n=4 vs 4)"
    )
    # version 1's reading (seeds 1-5, the sweep run as seed 1) is kept, labelled
    v1 = {
        r["task"]: r
        for r in table(
            text,
            "## Converged: AdaLoRA against the other arms (Welch 95% intervals), "
            "version 1's reading (seeds 1-5, seed 1 = the selected sweep run)",
        )  # fmt: skip
    }
    old = C.welch(ADA, LORA2)
    assert v1["SST-2"]["AdaLoRA 3→2 − LoRA r=2"] == (
        f"+10.00 [{old.lo:+.2f}, {old.hi:+.2f}], df={old.df:.1f}: better (n=5 vs 5)"
    )
    assert "AdaLoRA 3→2 − LoRA r=3" in v1["SST-2"]
    # the headline, before the discussion: one row per task and pre-stated comparison
    head = table(text, "## Headline: the converged verdicts")
    assert text.index("## Headline: the converged verdicts") < text.index("## Discussion")
    by = {(r["task"], r["against"]): r for r in head}
    assert set(by) == {("SST-2", "LoRA r=2"), ("SST-2", "LoRA (AdaLoRA's ranks)"),
                       ("CoLA", "LoRA r=2"), ("CoLA", "LoRA (AdaLoRA's ranks)")}  # fmt: skip
    row = by[("SST-2", "LoRA r=2")]
    assert row["difference [95%]"] == f"+10.00 [{better.lo:+.2f}, {better.hi:+.2f}]"
    # SST-2 has 4 of the 5 report seeds: its reading is interim, p = 1 for Holm
    assert row["AdaLoRA's score"] == "82.50 ± 1.29 (n=4)"
    assert row["per interval"] == "interim: better (n=4 vs 4 of 5)"
    assert row["Holm (k=19)"] == "interim (p = 1)"
    worse = C.welch([50.2, 50.3, 50.4, 50.5, 50.6], cola)
    assert by[("CoLA", "LoRA r=2")]["per interval"] == "worse"
    assert by[("CoLA", "LoRA r=2")]["Holm (k=19)"] == f"**worse** (p={worse.p:.3f})"
    assert by[("CoLA", "LoRA (AdaLoRA's ranks)")]["difference [95%]"] == "-"
    old_head = table(text, "## Headline, version 1's reading (kept for comparison)")
    assert old_head[0]["AdaLoRA's score"] == "82.00 ± 1.58 (n=5)"
    settings = {r["task"]: r for r in table(text, "## Converged: selected settings")}
    assert settings["SST-2"]["AdaLoRA 3→2"] == "lr=0.002 (sweep); seeds 2, 3, 4, 5"
    assert settings["SST-2"]["LoRA r=3"].startswith("lr=0.001, alpha/r=8 (from LoRA r=2)")
    sweep = table(text, "## Converged: the sweep (seed 1, final evaluation)")
    chosen = {(r["task"], r["method"], r["setting"]): r[""] for r in sweep if r[""]}
    # the fixture's LoRA grid ties two settings: the flag names the other one
    assert chosen[("SST-2", "LoRA r=2", "lr=0.001, alpha=16")] == (
        "selected (tied with lr=0.002, alpha=2: the rule takes the smaller LR, then alpha)"
    )
    # AdaLoRA's best is the grid's highest LR: flagged, its optimum may lie beyond
    assert chosen[("SST-2", "AdaLoRA 3→2", "lr=0.002")] == "selected (highest LR of the grid)"
    assert len([r for r in sweep if r["task"] == "SST-2" and r["method"] == "LoRA r=2"]) == 8
    # full FT's grid has 3 LRs, the fixture 2: the selection is marked provisional everywhere
    full = [v for (t, m, _), v in chosen.items() if (t, m) == ("SST-2", "Full FT")]
    assert len(full) == 1 and full[0].startswith("selected (provisional: 2 of 3 settings in")
    assert "(sweep; sweep 2 of 3 settings in, provisional)" in settings["SST-2"]["Full FT"]
    assert settings["CoLA"]["LoRA r=3"].endswith(
        "(from LoRA r=2; sweep 1 of 8 settings in, provisional)"
    )
    cal = table(text, "## Converged: calibration (one seed, every epoch)")
    assert cal[0]["dev score per epoch"] == "1: 60.00; 2: 75.00; 3: 81.00; 4: 82.00"
    tinit = table(
        text, "### Ablation: tinit fraction (warm-up before pruning, tinit / T) (`tinit_frac`)"
    )
    assert [r["tinit_frac"] for r in tinit] == ["0.15 (selected setting)", "0.1", "0.3"]
    assert tinit[1]["score"] == "72.00 ± 1.00 (n=3)" and tinit[2]["score"] == "77.00 ± 1.00 (n=3)"
    sched = table(text, "### Ablation: budget schedule shape (`schedule`)")
    assert [r["schedule"] for r in sched] == ["cubic (selected setting)", "cubic", "linear"]
    assert "Not run yet" in section(
        text, "### Ablation: deltaT (steps between rank allocations) (`delta_t`)"
    )


def test_converged_figures(tmp_path, tree):
    text = generate(tmp_path, tree)
    figs = tree / "figures"
    for name in ("curves", "calibration", "rank", "ablation"):
        png = figs / f"conv_{name}_sst2_tiny-bert.png"
        assert png.stat().st_size > 1000, name
        assert f"(results/figures/conv_{name}_sst2_tiny-bert.png)" in text
    first = (figs / "conv_ablation_sst2_tiny-bert.png").read_bytes()
    generate(tmp_path, tree)
    assert (figs / "conv_ablation_sst2_tiny-bert.png").read_bytes() == first  # deterministic
    specs = converged_figure_specs(load_runs(tree / "evidence"), figs)
    curves = next(s for s in specs if s.kind == "conv_curves" and "SST-2" in s.caption)
    xs, mean, lo, hi = epoch_band(curves.data["adalora"])
    assert xs == [1.0, 2.0, 3.0] and mean[-1] == pytest.approx(82.5)  # report seeds 2-5
    assert (lo[-1], hi[-1]) == (pytest.approx(81.0), pytest.approx(84.0))
    rank = next(s for s in specs if s.kind == "rank")
    assert len(rank.data) == 4  # the seeds/ runs that record a rank pattern
    ablation = next(s for s in specs if s.kind == "conv_ablation")
    assert [k for k, _ in KNOBS if k in ablation.data] == ["tinit_frac", "schedule"]
    # the selected setting's own value (not run as an ablation) is the main AdaLoRA cell
    tinit = ablation.data["tinit_frac"]
    assert [v for v, _ in tinit] == ["0.1", "0.15 (selected)", "0.3"]
    assert tinit[1][1].n == len(next(c for k, c in seed_cells_of(tree).items() if k[2] == "adalora"
                                     and k[1] == "sst2").runs)  # fmt: skip


def seed_cells_of(tree):
    from scripts.report.converged import seed_cells

    runs = [r for r in load_runs(tree / "evidence") if r.converged]
    return seed_cells(runs, reading="v1")  # the ablations belong to version 1


def test_empty_state(tmp_path):
    # make_tables refuses a results folder without runs; the document renders the empty state
    text, _ = generate_document([], tmp_path / "paper_tables.md", tmp_path / "figures")
    conv = text.split("# Converged runs")[1].split(SHORT_MARK)[0]
    headings = [line for line in conv.splitlines() if line.startswith("## ")]
    assert len(headings) == 9
    for h in headings:
        body = section(text, h)
        if "### " in body:
            assert body.count("Not run yet") == len(KNOBS)
        else:
            assert "Not run yet" in body, h
    assert "Runs: none yet" in conv and "| " not in conv


def test_short_runs_untouched_by_converged_files(tmp_path, tree):
    """Converged files change nothing after the short-run heading; short files change nothing
    in the converged section."""
    short = [
        record("short-ada", [0.5, 0.6], task="rte"),
        record("short-lora", [0.55], task="rte", method="lora", lora_r=2),
    ]
    alone, mixed = tmp_path / "a" / "results", tmp_path / "b" / "results"
    shutil.copytree(tree, mixed)
    for rec in short:
        write_result(rec, alone / "evidence" / "short")
        write_result(rec, mixed / "evidence" / "short")
    text_alone = generate(tmp_path / "a", alone)
    text_mixed = generate(tmp_path / "b", mixed)
    assert text_alone.split(SHORT_MARK)[1] == text_mixed.split(SHORT_MARK)[1]
    assert "glue: 2 runs (2 ok)" in text_mixed.split(SHORT_MARK)[1]
    # and the converged section is the same without the short files
    text_conv = generate(tmp_path, tree)
    assert text_conv.split(SHORT_MARK)[0] == text_mixed.split(SHORT_MARK)[0]


def test_final_eval_reads_the_primary_split():
    """The last evaluation of the primary split (MNLI: validation_matched), in step order;
    without evals, metrics.main_final; not finite -> None."""
    rec = record("m", [0.5])
    rec["metrics"]["primary_split"] = "validation_matched"
    rec["metrics"]["evals"] = [
        {"step": 200, "epoch": 2.0, "split": "validation_matched", "acc": 0.7},
        {"step": 200, "epoch": 2.0, "split": "validation_mismatched", "acc": 0.9},
        {"step": 100, "epoch": 1.0, "split": "validation_matched", "acc": 0.6},
    ]
    r = Run.from_record(rec)
    assert r.evals() == [(100, 1.0, pytest.approx(60.0)), (200, 2.0, pytest.approx(70.0))]
    assert r.final_eval == pytest.approx(70.0)
    rec["metrics"]["evals"] = []
    assert Run.from_record(rec).final_eval == pytest.approx(50.0)
    rec["metrics"]["main_final"] = float("nan")
    assert Run.from_record(rec).final_eval is None


def test_accounting_sums_wall_time_per_stage():
    """Run counts per stage with their summed wall time in hours; runs without one are named."""
    from dataclasses import replace

    from scripts.report.tables_converged import accounting

    base = Run.from_record(record("r", [0.5, 0.6]))
    runs = [
        replace(base, protocol=CONVERGED, stage="sweep", wall_time_s=1800.0),
        replace(base, protocol=CONVERGED, stage="sweep", wall_time_s=5400.0),
        replace(base, protocol=CONVERGED, stage="seeds", wall_time_s=None, status="diverged"),
    ]
    lines = accounting(runs)
    assert "- `sweep/`: 2 runs (2 ok), 2.0 h" in lines
    assert "- `seeds/`: 1 runs (1 diverged), 0.0 h (1 without a wall time)" in lines
    assert lines[-2] == "- in all: 3 runs, 2.0 h (1 without a wall time)"
    assert lines[-1].startswith("- 3 result files record no git commit")
    committed = [replace(r, git_commit="abc") for r in runs]
    assert accounting(committed)[-1] == "- in all: 3 runs, 2.0 h (1 without a wall time)"


def test_interval_end_near_zero_keeps_its_sign_visible():
    """An interval end that rounds to 0.00 gets one more digit, so "better" never sits beside
    a lower end printed as +0.00."""
    w = C.Welch(5, 5, diff=3.3673, lo=0.004869, hi=6.7297, df=6.3)
    assert w.verdict == "better"
    assert C.interval_text(w) == "+3.37 [+0.005, +6.73]"
    assert C.verdict_text(w) == "+3.37 [+0.005, +6.73], df=6.3: better (n=5 vs 5)"
    assert C.interval_text(C.Welch(5, 5, diff=-1.0, lo=-2.0, hi=-0.0031)) == "-1.00 [-2.00, -0.003]"
    assert C.interval_text(C.Welch(2, 2, diff=1.0, lo=0.0, hi=2.0)) == "+1.00 [+0.00, +2.00]"


def test_evals_drop_an_evaluation_just_before_the_final_one():
    """Older runners evaluated at 6312 and again at the final 6315: the later stands for both,
    so the still-rising flag compares evaluations an interval apart."""
    rec = record("sst", [0.80, 0.84, 0.85, 0.86])
    rows = rec["metrics"]["evals"]
    rows[-1]["step"] = rows[-2]["step"] + 3  # 100, 200, 300, 303
    run = Run.from_record(rec)
    assert [(s, round(v, 6)) for s, _, v in run.evals()] == [(100, 80.0), (200, 84.0), (303, 86.0)]
    assert C.rise_of([run, run])[0] == pytest.approx(2.0)
    # evenly spaced evaluations are all kept
    assert len(Run.from_record(record("even", [0.8, 0.84, 0.85, 0.86])).evals()) == 4


def test_welch_p_and_holm():
    w = C.welch(ADA, LORARP)
    assert w.p == pytest.approx(sps.ttest_ind(ADA, LORARP, equal_var=False).pvalue)
    # Holm: sorted p 0.001, 0.02, 0.04 over k = 3 -> 0.001 <= 0.05/3, 0.02 <= 0.05/2, 0.04 <= 0.05
    assert C.holm({"a": 0.04, "b": 0.001, "c": 0.02}) == {"a": True, "b": True, "c": True}
    # a family of 19 (the rest not run yet): 0.02 > 0.05 / 18 stops the steps
    assert C.holm({"a": 0.04, "b": 0.001, "c": 0.02}, 19) == {"a": False, "b": True, "c": False}
    # step-down stops at the first failure even if a later p would pass its own bound
    assert C.holm({"a": 0.03, "b": 0.03}, 2) == {"a": False, "b": False}
    with pytest.raises(ValueError, match="family of 1"):
        C.holm({"a": 0.1, "b": 0.2}, 1)
    # the pre-stated family: r=2 and r=8 (two comparisons, four tasks), r=1 (one, three tasks)
    assert C.family_size() == 2 * 4 + 2 * 4 + 1 * 3


def test_arms_by_budget():
    def arm(**kw):
        rec = record("x", [0.5], **{k: v for k, v in kw.items() if k != "rpf"})
        if kw.get("rpf"):
            rec["hyperparameters"]["rank_pattern_from"] = "a.json"
            rec["variant"] = "rank_pattern"
        return C.arm_of(Run.from_record(rec))

    assert arm() == "adalora"
    assert arm(init_r=12, target_r=8.0) == "adalora_12to8"
    assert arm(init_r=4, target_r=2.0) == "adalora_4to2"
    assert arm(init_r=2, target_r=1.0) == "adalora_2to1"
    assert arm(method="lora", lora_r=8, target_r=8.0) == "lora_r8"
    assert arm(method="lora", lora_r=2, rpf=True) == "lora_rp"
    assert arm(method="lora", lora_r=8, target_r=8.0, rpf=True) == "lora_rp8"
    assert arm(method="svd_lora") == "svd_lora"
    assert arm(method="svd_lora", init_r=12, target_r=8.0) == "svd_lora_r8"
