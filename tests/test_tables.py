"""scripts/make_tables.py and scripts/report/: numbers, missing cells, differences, diverged
runs, determinism, --check, figures, the results layout (only results/evidence/ counts by
default); the committed paper_tables.md is current."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from experiments import plots
from experiments.results import SCHEMA, write_result
from experiments.validation.base import BadInput
from scripts import make_tables as mt
from scripts import paper_numbers as P
from scripts.report import document, figures, wandb_import
from scripts.report.records import Run, load_runs

ROOT = Path(__file__).resolve().parents[1]


def record(
    name,
    task="rte",
    method="adalora",
    variant="",
    model="tiny-bert",
    seed=1,
    lr=1e-3,
    level=2.0,
    main=0.8,
    status="ok",
    kind="glue",
    sweep=None,
    rank_pattern=None,
    curve=None,
    rouge=None,
    table_uses="best",
):
    hp = {"lr": lr, "tinit": 10, "tfinal": 10, "delta_t": 1}
    if sweep is not None:
        hp["sweep"] = sweep
    budget = (
        None
        if level is None
        else {
            "n_modules": 4,
            "init_total_rank": 12,
            "final_total_rank": int(level * 4),
            "avg_final_rank": level,
            "curve": curve or [[0, 12], [50, 8]],
        }
    )
    best = {"acc": main} if rouge is None else dict(rouge)
    return {
        "schema": SCHEMA,
        "run_name": name,
        "kind": kind,
        "task": task,
        "method": method,
        "variant": variant,
        "model": model,
        "model_type": "bert",
        "seed": seed,
        "preset": "quick",
        "n_train": 10,
        "n_eval": {"validation": 10},
        "hyperparameters": hp,
        "budget": budget,
        "params": {"trainable": 100, "final_adapter": 80, "total": 10000},
        "rank_pattern": rank_pattern,
        "metrics": {
            "main": "acc" if rouge is None else "rougeL",
            "table_uses": table_uses,
            "evals": [],
            "final": best,
            "best": best,
            "main_final": main,
            "main_best": main,
        },
        "status": status,
        "wall_time_s": 1.0,
        "versions": {},
        "hardware": {},
        "command": "python experiments/glue.py",
        "created": "2024-01-01T00:00:00Z",
    }


def write_all(results: Path, recs):
    """Result files into the layout's committed-evidence folder ``results/evidence``."""
    for r in recs:
        write_result(r, results / "evidence")


def rows_of(text: str) -> list:
    """Every markdown table row as a list of cell strings."""
    out = []
    for line in text.splitlines():
        if line.startswith("| ") and line.endswith(" |"):
            out.append([c.strip() for c in line[2:-2].split(" | ")])
    return out


def find_row(text, *prefix):
    hits = [r for r in rows_of(text) if r[: len(prefix)] == list(prefix)]
    assert len(hits) == 1, (prefix, hits)
    return hits[0]


def col(text, header_first, name):
    header = next(r for r in rows_of(text) if r[0] == header_first and name in r)
    return header.index(name)


@pytest.fixture
def glue_results(tmp_path):
    res = tmp_path / "results"
    recs = [
        # AdaLoRA, RTE, r=2, lr 1e-3: 80, 82, 84 (+1 diverged)
        record("ada-1", seed=1, main=0.80),
        record("ada-2", seed=2, main=0.82),
        record("ada-3", seed=3, main=0.84),
        record("ada-4", seed=4, main=float("nan"), status="diverged"),
        # LoRA, RTE, r=2: lr 1e-3 -> 70, 74 ; lr 5e-4 -> 75, 75 (best LR)
        record("lora-1", method="lora", seed=1, main=0.70),
        record("lora-2", method="lora", seed=2, main=0.74),
        record("lora-3", method="lora", seed=1, lr=5e-4, main=0.75),
        record("lora-4", method="lora", seed=2, lr=5e-4, main=0.75),
        # Full FT (no budget -> level "-"), one seed
        record("full-1", method="full", level=None, lr=2e-5, main=0.7),
    ]
    write_all(res, recs)
    return res


def generate(tmp_path, res, *extra):
    """paper_tables.md for the results layout ``res`` (evidence/, figures/, discussion.md)."""
    out = tmp_path / "paper_tables.md"
    rc = mt.main(["--out", str(out), *extra], results_root=res)
    assert rc == 0
    return out.read_text()


def test_table1_numbers(tmp_path, glue_results):
    text = generate(tmp_path, glue_results)
    rte = col(text, "budget (avg final rank)", "RTE")
    cola = col(text, "budget (avg final rank)", "CoLA")
    avg = col(text, "budget (avg final rank)", "avg")
    ada = find_row(text, "r=2", "AdaLoRA", "ours: tiny-bert, best LR")
    # mean(80, 82, 84) = 82, sample std = 2; the diverged run is counted, not averaged
    assert ada[rte] == "82.00 ± 2.00 (n=3, lr=0.001, 1 diverged)"
    assert ada[cola] == "-"
    assert ada[avg] == "82.00 (1/8 tasks)"
    lora_best = find_row(text, "r=2", "LoRA", "ours: tiny-bert, best LR")
    assert lora_best[rte] == "75.00 ± 0.00 (n=2, lr=0.0005)"
    # shared LR: only 1e-3 has both methods; LoRA there: mean(70, 74) = 72, std = 2.83
    lora_shared = find_row(text, "r=2", "LoRA", "ours: tiny-bert, shared LR")
    assert lora_shared[rte] == "72.00 ± 2.83 (n=2, lr=0.001)"
    ada_shared = find_row(text, "r=2", "AdaLoRA", "ours: tiny-bert, shared LR")
    assert ada_shared[rte] == "82.00 ± 2.00 (n=3, lr=0.001, 1 diverged)"
    # differences: best LR each: 82 - 75 = 7, combined std sqrt(4/3 + 0/2) = 1.15 -> significant
    d_best = find_row(text, "r=2", "AdaLoRA − LoRA", "ours: tiny-bert, best LR each")
    assert d_best[rte] == f"+7.00 ± {math.sqrt(4 / 3):.2f}*"
    assert d_best[cola] == "-"
    # shared: 82 - 72 = 10, sqrt(4/3 + 8/2) = 2.31
    d_shared = find_row(text, "r=2", "AdaLoRA − LoRA", "ours: tiny-bert, shared LR")
    assert d_shared[rte] == f"+10.00 ± {math.sqrt(4 / 3 + 8 / 2):.2f}*"
    # no runs at r=8: "-" everywhere, paper row present and exact
    ada8 = find_row(text, "r=8", "AdaLoRA", "ours: tiny-bert, best LR")
    assert set(ada8[3:]) == {"-"}
    paper8 = find_row(text, "r=8", "AdaLoRA", "paper (DeBERTaV3-base, 1.27M params)")
    assert paper8[rte] == "88.09" and paper8[avg] == "89.31"
    full = find_row(text, "-", "Full FT", "ours: tiny-bert, best LR")
    assert full[rte] == "70.00 (n=1, lr=2e-05)"  # n=1: no std


def test_shared_lr_option_and_not_significant(tmp_path):
    res = tmp_path / "results"
    write_all(
        res,
        [
            record("a1", seed=1, main=0.80, lr=1e-3),
            record("a2", seed=2, main=0.90, lr=1e-3),
            record("l1", method="lora", seed=1, main=0.78, lr=1e-3),
            record("l2", method="lora", seed=2, main=0.88, lr=1e-3),
            record("s1", task="sst2", method="lora", main=0.9, lr=2e-3),
        ],
    )
    text = generate(tmp_path, res, "--shared-lr", "0.002")
    rte = col(text, "budget (avg final rank)", "RTE")
    # no RTE runs at the forced LR (only SST-2 has it) -> "-"
    assert find_row(text, "r=2", "AdaLoRA", "ours: tiny-bert, shared LR")[rte] == "-"
    assert "fixed at lr=0.002 (--shared-lr)" in text
    d = find_row(text, "r=2", "AdaLoRA − LoRA", "ours: tiny-bert, best LR each")[rte]
    # diff 2, std of (80, 90) = 7.07 each -> combined 7.07: not marked
    assert d == f"+2.00 ± {math.sqrt(50 / 2 + 50 / 2):.2f}"


def test_only_diverged_cell(tmp_path):
    res = tmp_path / "results"
    write_all(
        res,
        [
            record("d1", main=float("nan"), status="diverged"),
            record("d2", seed=2, main=float("nan"), status="diverged"),
        ],
    )
    text = generate(tmp_path, res)
    rte = col(text, "budget (avg final rank)", "RTE")
    assert find_row(text, "r=2", "AdaLoRA", "ours: tiny-bert, best LR")[rte] == "- (2 diverged)"
    assert "glue: 2 runs (2 diverged)" in text


def test_empty_results_show_paper_and_dashes(tmp_path):
    # make_tables refuses a results folder without runs (test_make_tables_strict.py); the
    # document itself still renders the paper's rows with dashes for ours
    text, _ = document.generate([], tmp_path / "paper_tables.md", tmp_path / "figures")
    row = find_row(text, "r=2", "LoRA", "ours (no runs yet), best LR")
    assert set(row[3:]) == {"-"}
    lora2 = find_row(text, "r=2", "LoRA r=2", "paper (DeBERTaV3-base, 0.33M params)")
    assert lora2[3:] == [P.TABLE1[10]["scores"][t] for t in P.GLUE_TASKS] + ["88.15"]
    assert find_row(text, "0.13%", "AdaLoRA", "paper (BART-large)")[3:] == [
        "43.29",
        "19.95",
        "35.04",
        "43.94",
        "20.83",
        "40.96",
    ]
    assert "## Discussion\n\n-\n" in text


def test_discussion_survives(tmp_path, glue_results):
    (glue_results / "discussion.md").write_text("AdaLoRA helps on RTE.\n")
    text = generate(tmp_path, glue_results)
    assert "## Discussion\n\nAdaLoRA helps on RTE.\n" in text
    other = tmp_path / "elsewhere.md"
    other.write_text("LoRA helps too.\n")
    text = generate(tmp_path, glue_results, "--discussion", str(other))
    assert "## Discussion\n\nLoRA helps too.\n" in text


def test_summarization_table(tmp_path):
    res = tmp_path / "results"
    r = dict(rouge1=0.40, rouge2=0.20, rougeL=0.30)
    write_all(
        res,
        [
            record("x1", kind="summarization", task="xsum", seed=1, main=0.30, rouge=r),
            record(
                "x2",
                kind="summarization",
                task="xsum",
                seed=2,
                main=0.32,
                rouge=dict(rouge1=0.42, rouge2=0.22, rougeL=0.32),
            ),
        ],
    )
    text = generate(tmp_path, res)
    row = find_row(text, "r=2 (0.80% params)", "AdaLoRA", "ours: tiny-bert, best LR")
    std = f"{math.sqrt(2):.2f}"
    assert row[3:6] == [
        f"41.00 ± {std} (n=2, lr=0.001)",
        f"21.00 ± {std} (n=2, lr=0.001)",
        f"31.00 ± {std} (n=2, lr=0.001)",
    ]
    assert row[6:] == ["-", "-", "-"]


def test_ablation_table_compares_at_the_ablations_lr(tmp_path):
    """AdaLoRA / LoRA columns use the LR the row's ablations share, not their own best LR (which
    would mix an LR effect into the ablation); with ablations at several LRs, best LR per cell."""
    res = tmp_path / "results"
    write_all(
        res,
        [
            record("g0", variant="gamma=0", main=0.70),
            record("a1", main=0.60),
            record("a2", lr=2e-3, main=0.90),
            record("l1", method="lora", main=0.65),
        ],
    )

    def row(text):
        return next(r for r in rows_of(text) if r[:3] == ["tiny-bert", "RTE", "r=2"] and len(r) > 6)

    header = next(
        r for r in rows_of(generate(tmp_path, res)) if r[:3] == ["model", "task", "budget"]
    )
    r = row(generate(tmp_path, res))
    assert r[header.index("AdaLoRA")] == "60.00 (n=1, lr=0.001)"
    assert r[header.index("LoRA")] == "65.00 (n=1, lr=0.001)"
    write_all(res, [record("g2", variant="gamma=0", lr=2e-3, main=0.75)])
    r = row(generate(tmp_path, res))
    assert r[header.index("AdaLoRA")] == "90.00 (n=1, lr=0.002)"
    assert r[header.index("AdaLoRA gamma=0")] == "75.00 (n=1, lr=0.002)"


def test_lr_table_every_lr_and_seed(tmp_path, glue_results):
    """Every LR of a cell side by side, with each seed's score (a diverged run by its status)."""
    text = generate(tmp_path, glue_results)
    section = text.split("### Every learning rate")[1].split("###")[0]
    header = next(r for r in rows_of(section) if r[0] == "model")
    assert header[4:] == ["lr=2e-05", "lr=0.0005", "lr=0.001"]
    lora = find_row(section, "tiny-bert", "RTE", "r=2", "LoRA")
    assert lora[4:] == [
        "-",
        "75.00 ± 0.00 (n=2) [75.0, 75.0]",
        f"72.00 ± {math.sqrt(8):.2f} (n=2) [70.0, 74.0]",
    ]
    ada = find_row(section, "tiny-bert", "RTE", "r=2", "AdaLoRA")
    assert ada[6] == "82.00 ± 2.00 (n=3, 1 diverged) [80.0, 82.0, 84.0, diverged]"


def test_partial_sweep_point_does_not_win_best_or_shared_lr(tmp_path):
    """A higher mean at an LR with fewer seeds is not chosen as best or shared LR."""
    res = tmp_path / "results"
    write_all(
        res,
        [record(f"a{s}", seed=s, main=0.70) for s in (1, 2)]
        + [record(f"l{s}", method="lora", seed=s, main=0.60) for s in (1, 2)]
        + [record("a9", lr=2e-3, main=0.95), record("l9", method="lora", lr=2e-3, main=0.9)],
    )
    text = generate(tmp_path, res)
    best = find_row(text, "r=2", "AdaLoRA", "ours: tiny-bert, best LR")
    shared = find_row(text, "r=2", "AdaLoRA − LoRA", "ours: tiny-bert, shared LR")
    rte = col(text, "budget (avg final rank)", "RTE")
    assert best[rte] == "70.00 ± 0.00 (n=2, lr=0.001)" and shared[rte].startswith("+10.00")


def test_param_table_ranges_and_ratio(tmp_path):
    """Final adapter parameters per task and level: LoRA's, AdaLoRA's range over its runs and
    the AdaLoRA / LoRA ratio range; ablation variants and sweeps stay out."""
    res = tmp_path / "results"
    recs = [
        record("a1", seed=1),
        record("a2", seed=2),
        record("l1", method="lora"),
        record("g0", variant="gamma=0"),
        record("sw", sweep={"lora_alpha": 2}),
    ]
    for r, n in zip(recs, (90, 110, 100, 5, 5)):
        r["params"]["final_adapter"] = n
    write_all(res, recs)
    text = generate(tmp_path, res)
    section = text.split("### Final adapter parameters")[1].split("##")[0]
    assert find_row(section, "tiny-bert", "RTE", "r=2") == [
        "tiny-bert",
        "RTE",
        "r=2",
        "100",
        "90-110 (n=2)",
        "0.90-1.10",
    ]


def test_ablation_schedule_and_sweep_tables(tmp_path):
    res = tmp_path / "results"
    write_all(
        res,
        [
            record("p1", method="prune_lora", main=0.70),
            record("p2", method="prune_lora", seed=2, main=0.72),
            record("s1", variant="score=sensitivity", main=0.66),
            record("a1", main=0.80),
            record("lin1", variant="schedule=linear", main=0.77),
            record("sw1", sweep={"tinit": 100, "delta_t": 1}, main=0.60),
            record("sw2", sweep={"tinit": 100, "delta_t": 10}, main=0.64),
            record("sw3", sweep={"tinit": 200, "delta_t": 1}, main=0.70),
        ],
    )
    text = generate(tmp_path, res)
    header = next(r for r in rows_of(text) if r[:3] == ["model", "task", "budget"])
    [row] = [
        r for r in rows_of(text) if r[:3] == ["tiny-bert", "RTE", "r=2"] and len(r) == len(header)
    ]  # the ablation table
    assert row[header.index("Prune LoRA")] == f"71.00 ± {math.sqrt(2):.2f} (n=2, lr=0.001)"
    assert row[header.index("sensitivity only (s = I)")] == "66.00 (n=1, lr=0.001)"
    assert row[header.index("AdaLoRA")] == "80.00 (n=1, lr=0.001)"  # sweep runs excluded
    assert row[header.index("SVD-LoRA")] == "-"
    # schedule table
    sched = [
        r
        for r in rows_of(text.split("## Tables 4 and 5")[1])
        if r[:3] == ["tiny-bert", "RTE", "r=2"] and len(r) == 6
    ]
    assert sched == [
        ["tiny-bert", "RTE", "r=2", "80.00 (n=1, lr=0.001)", "77.00 (n=1, lr=0.001)", "-"]
    ]
    # sweep marginal on tinit: tinit=100 pools delta_t 1 and 10 -> mean(60, 64) = 62
    assert "### Sweep: `tinit`" in text and "### Sweep: `delta_t`" in text
    t100 = [r for r in rows_of(text) if r[6:7] == ["100"]]
    assert t100 == [
        [
            "tiny-bert",
            "RTE",
            "adalora",
            "-",
            "r=2",
            "0.001",
            "100",
            f"62.00 ± {math.sqrt(8):.2f} (n=2)",
            "delta_t in {1, 10}",
        ]
    ]
    assert (
        find_row(text, "tiny-bert", "RTE", "adalora", "-", "r=2", "0.001", "delta_t=1, tinit=200")[
            7
        ]
        == "70.00 (n=1)"
    )
    # beside the sweep, the plain run of the same cell at its own tinit (10)
    tinit = text.split("### Sweep: `tinit`")[1].split("###")[0]
    assert find_row(tinit, "tiny-bert", "RTE", "adalora", "-", "r=2", "0.001", "10") == [
        "tiny-bert",
        "RTE",
        "adalora",
        "-",
        "r=2",
        "0.001",
        "10",
        "80.00 (n=1)",
        "not swept (the plain runs)",
    ]


def test_deterministic_and_check(tmp_path, glue_results):
    (glue_results / "discussion.md").write_text("Notes.\n")
    out = tmp_path / "paper_tables.md"
    args = ["--out", str(out), "--figures", str(tmp_path / "figs")]
    assert mt.main(args, results_root=glue_results) == 0
    first = out.read_bytes()
    assert mt.main(args, results_root=glue_results) == 0
    assert out.read_bytes() == first
    assert mt.main(args + ["--check"], results_root=glue_results) == 0
    # --results names the folder explicitly; nested folders are read too
    explicit = args + ["--results", str(glue_results / "evidence"), "--check"]
    explicit += ["--discussion", str(glue_results / "discussion.md")]
    assert mt.main(explicit) == 0
    write_result(record("ada-5", seed=5, main=0.9), glue_results / "evidence" / "more")
    assert mt.main(args + ["--check"], results_root=glue_results) == 1  # stale
    assert mt.main(explicit) == 1
    assert out.read_bytes() == first  # --check never writes
    none = ["--out", str(tmp_path / "none.md"), "--check"]
    assert mt.main(none, results_root=glue_results) == 1


def test_user_runs_do_not_change_the_tables(tmp_path):
    """A run of one's own in results/runs/ (git-ignored) leaves the default tables alone: by
    default only the committed evidence (results/evidence/, recursively) is read."""
    committed = ROOT / "paper_tables.md"
    if not committed.exists():
        pytest.skip("paper_tables.md not generated yet")
    res = tmp_path / "results"
    shutil.copytree(ROOT / "results" / "evidence", res / "evidence")
    shutil.copy(ROOT / "results" / "discussion.md", res / "discussion.md")
    user = record("user-run", task="rte", method="adalora", level=2.0, main=0.99, seed=99)
    user["model"] = next(r.model for r in load_runs(res / "evidence") if r.task == "rte")
    write_result(user, res / "runs")
    # --check renders nothing; the figure links point where the committed figures are
    check = ["--out", str(committed), "--figures", str(ROOT / "results" / "figures"), "--check"]
    assert mt.main(check, results_root=res) == 0
    # the same run does count when its folder is read: the check above is not vacuous
    assert mt.main(check + ["--results", str(res)], results_root=res) == 1


def test_figures(tmp_path):
    res = tmp_path / "results"
    rp = {
        f"bert.encoder.layer.{i}.attention.self.{m}": i + j
        for i in range(2)
        for j, m in enumerate(("query", "value"))
    }
    rp.update({f"bert.encoder.layer.{i}.output.dense": 1 for i in range(2)})
    write_all(
        res,
        [
            record("a1", rank_pattern=rp, curve=[[0, 12], [10, 12], [40, 8], [50, 8]]),
            record("a2", seed=2, rank_pattern={k: v + 1 for k, v in rp.items()}),
            record("l1", method="lora", level=2.0),
            record("l2", method="lora", level=4.0),
            record("a3", level=4.0, main=0.85),
        ],
    )
    text = generate(tmp_path, res)
    figs = sorted((res / "figures").glob("*.png"))
    names = [f.name for f in figs]
    assert "rank_rte_r2_tiny-bert.png" in names and "rank_rte_r4_tiny-bert.png" not in names
    assert "budget_rte_tiny-bert.png" in names and "score_vs_budget_rte_tiny-bert.png" in names
    assert all(f.stat().st_size > 1000 for f in figs)
    assert "(results/figures/rank_rte_r2_tiny-bert.png)" in text
    # seeds averaged: layer 0 query: (0 + 1) / 2
    labels, layers, grid = plots.rank_grid([rp, {k: v + 1 for k, v in rp.items()}])
    assert labels == ["Wq", "Wv", "Wf2"] and layers == [0, 1]
    assert grid[("Wq", 0)] == 0.5 and grid[("Wv", 1)] == 2.5
    # --check does not render
    for f in figs:
        f.unlink()
    assert mt.main(["--out", str(tmp_path / "paper_tables.md"), "--check"], results_root=res) == 0
    assert not list((res / "figures").glob("*.png"))


def test_training_loss_figure(tmp_path):
    """Runs that record train_log get one loss figure per task: one curve per (method, level,
    LR, sweep point), averaged over seeds at each logged step; runs without a curve add none."""
    res = tmp_path / "results"
    a1, a2 = record("a1"), record("a2", seed=2)
    a1["train_log"] = [{"step": 10, "loss": 2.0}, {"step": 20, "loss": 1.0}]
    a2["train_log"] = [{"step": 10, "loss": 4.0}, {"step": 20, "loss": float("nan")}]
    sw = record("sw", method="lora", sweep={"lora_alpha": 2})
    sw["train_log"] = [{"step": 10, "loss": 3.0}]
    write_all(res, [a1, a2, sw, record("old", task="cola")])
    text = generate(tmp_path, res)
    assert (res / "figures" / "train_loss_rte_tiny-bert.png").stat().st_size > 1000
    assert not (res / "figures" / "train_loss_cola_tiny-bert.png").exists()
    assert "(results/figures/train_loss_rte_tiny-bert.png)" in text
    spec = next(
        f for f in figures.figure_specs(load_runs(res), res / "figures") if f.kind == "loss"
    )
    assert sorted(spec.data) == ["AdaLoRA, r=2, lr=0.001", "LoRA, r=2, lr=0.001, lora_alpha=2"]
    assert figures.mean_curve(spec.data["AdaLoRA, r=2, lr=0.001"]) == ([10, 20], [3.0, 1.0])


def test_score_vs_lr_figure(tmp_path):
    """A task whose LoRA / AdaLoRA runs span two or more LRs gets a score-vs-LR figure drawn
    from Table 1's runs only (no sweep points, no full FT); a task at one LR gets none."""
    res = tmp_path / "results"
    runs = [
        record("a1"),
        record("a2", lr=2e-3),
        record("l1", method="lora", lr=5e-4),
        record("full", method="full", level=None, lr=5e-5),
        record("sw", method="lora", sweep={"lora_alpha": 2}),
        record("c1", task="cola"),
        record("c2", task="cola", method="lora"),
    ]
    write_all(res, runs)
    text = generate(tmp_path, res)
    assert (res / "figures" / "score_vs_lr_rte_tiny-bert.png").stat().st_size > 1000
    assert "(results/figures/score_vs_lr_rte_tiny-bert.png)" in text
    assert not (res / "figures" / "score_vs_lr_cola_tiny-bert.png").exists()
    spec = next(f for f in figures.figure_specs(load_runs(res), res / "figures") if f.kind == "lr")
    assert sorted(r.name for r in spec.data) == ["a1", "a2", "l1"]


@pytest.mark.parametrize(
    "name,expected",
    [
        ("bert.encoder.layer.3.attention.self.query", (3, "Wq")),
        ("bert.encoder.layer.3.attention.output.dense", (3, "Wo")),
        ("bert.encoder.layer.11.intermediate.dense", (11, "Wf1")),
        ("bert.encoder.layer.11.output.dense", (11, "Wf2")),
        ("deberta.encoder.layer.3.attention.self.query_proj", (3, "Wq")),
        ("deberta.encoder.layer.0.attention.self.value_proj", (0, "Wv")),
        ("model.encoder.layers.2.self_attn.q_proj", (2, "enc.self.Wq")),
        ("model.decoder.layers.5.encoder_attn.k_proj", (5, "dec.cross.Wk")),
        ("model.decoder.layers.5.self_attn.out_proj", (5, "dec.self.Wo")),
        ("model.decoder.layers.1.fc1", (1, "dec.Wf1")),
        ("encoder.block.4.layer.1.DenseReluDense.wo", (4, "enc.Wf2")),
        ("decoder.block.2.layer.1.EncDecAttention.o", (2, "dec.cross.Wo")),
        ("classifier.dense", (None, "dense")),
    ],
)
def test_parse_module(name, expected):
    # seq2seq names are recognised by their decoder part; pass it for encoder-only names
    seq2seq = name.startswith(("model.", "encoder.block", "decoder."))
    assert plots.parse_module(name, seq2seq) == expected


def test_wandb_offline_error_and_conversion(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    with pytest.raises(BadInput, match="^--wandb me/adalora: W&B is offline"):
        wandb_import.fetch_wandb("me/adalora")
    # config as experiments/train.py logs it; "variant" there is the AdaLoRA rule set
    config = {
        "task": "rte",
        "method": "adalora",
        "model": "m",
        "seed": 1,
        "preset": "quick",
        "lr": 1e-3,
        "delta_t": 1,
        "budget": 48,
        "n_modules": 24,
        "variant": "peft",
        "variant_tag": "score=magnitude",
        "sweep": None,
    }
    summary = {
        "eval/main": {"max": 0.71},
        "eval/main_best": 0.7,
        "eval/main_final": 0.69,
        "status": "ok",
    }
    rec = wandb_import.wandb_to_record(
        "run-x", config, summary, "finished", ["task", "method", "seed", "lr", "delta-t"]
    )
    assert rec["hyperparameters"]["sweep"] == {"lr": 1e-3, "delta_t": 1}
    assert rec["variant"] == "score=magnitude" and rec["kind"] == "glue"
    run = Run.from_record(rec)
    assert (
        run.level == 2
        and run.score == pytest.approx(70.0)
        and run.sweep == {"lr": 1e-3, "delta_t": 1}
    )
    assert rec["status"] == "ok"
    full = wandb_import.wandb_to_record(
        "f", {**config, "method": "full", "variant_tag": ""}, summary, "crashed"
    )
    assert Run.from_record(full).level == "-" and full["status"] == "ok"
    assert (
        wandb_import.wandb_to_record("c", config, {"eval/main": 0.5}, "crashed")["status"]
        == "crashed"
    )


def test_score_of_final_keyed_by_split():
    rec = record("x", rouge=dict(rouge1=0.4, rouge2=0.2, rougeL=0.3), table_uses="final")
    rec["metrics"]["final"] = {"validation": {"rougeL": 0.3}}
    rec["metrics"]["primary_split"] = "validation"
    assert Run.from_record(rec).metric("rougeL") == pytest.approx(30.0)


def test_rank_heatmap_figure():
    fig = plots.rank_heatmap_figure(
        {
            "model.encoder.layers.0.self_attn.q_proj": 3,
            "model.decoder.layers.1.encoder_attn.q_proj": 1,
        },
        title="t",
    )
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["enc.self.Wq", "dec.cross.Wq"]
    assert plots.rank_heatmap_figure({"classifier": 2}) is None
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_committed_paper_tables_current():
    if not (ROOT / "paper_tables.md").exists():
        pytest.skip("paper_tables.md not generated yet")
    assert mt.main(["--out", str(ROOT / "paper_tables.md"), "--check"]) == 0, (
        "paper_tables.md is stale: run python scripts/make_tables.py and commit it"
    )
