"""scripts/report/records.py and stats.py: every result file parses into a Run (the committed
evidence and older, sparser records), grouping keeps the runs' own values and order, and the
best / shared learning rate rules."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from scripts.report.records import NO_BUDGET, Run, load_runs
from scripts.report.stats import best_lr_stats, group, shared_lr, stats_of

ROOT = Path(__file__).resolve().parents[1]
EVIDENCE = ROOT / "results" / "evidence"


def run(name="r", method="adalora", lr=1e-3, main=0.8, status="ok", seed=1, **extra) -> Run:
    rec = {
        "schema": "adalora.result/1",
        "run_name": name,
        "kind": "glue",
        "task": "rte",
        "method": method,
        "variant": "",
        "model": "m",
        "seed": seed,
        "hyperparameters": {"lr": lr},
        "budget": {"avg_final_rank": 2.0},
        "metrics": {"table_uses": "best", "main_best": main},
        "status": status,
    }
    rec.update(extra)
    return Run.from_record(rec)


def test_every_committed_result_file_parses():
    files = sorted(EVIDENCE.rglob("*.json"))
    if not files:
        pytest.skip("no committed evidence")
    runs = load_runs(EVIDENCE)
    assert len(runs) == len(files)
    for r, path in zip(runs, files):
        raw = json.loads(path.read_text())
        assert r.name == raw["run_name"] and r.path == str(path)
        # "diverged" with a finite loss throughout reads as "constant" (test below)
        assert r.status in ({raw["status"], "constant"} if raw["status"] == "diverged" else
                            {raw["status"]}) and r.method == raw["method"]  # fmt: skip
        assert r.level == NO_BUDGET or isinstance(r.level, int)
        assert r.lr == raw["hyperparameters"]["lr"]
        if r.ok:
            raw_score = raw["metrics"]["main_" + raw["metrics"]["table_uses"]]
            if raw_score is not None and math.isfinite(raw_score):
                assert r.score == pytest.approx(100 * raw_score)
            else:  # an undefined score (nan) is no score
                assert r.score is None


def test_sparse_old_record():
    """A record with most keys absent still parses: no budget, LR, params or train_log."""
    r = Run.from_record({"run_name": "old", "metrics": {"main_best": 0.5}})
    assert (r.level, r.lr, r.status, r.variant, r.sweep) == (NO_BUDGET, None, "unknown", "", {})
    assert r.score == pytest.approx(50.0) and r.final_adapter is None and r.train_log is None
    assert r.is_main() and r.schedule == "cubic" and r.metric("acc") is None
    nan = Run.from_record({"metrics": {"main_best": float("nan")}, "status": "diverged"})
    assert nan.score is None and not nan.ok


def test_level_tags_schedule_and_sweep():
    r = run(
        variant="score=magnitude+schedule=linear",
        budget={"avg_final_rank": 3.5},
        hyperparameters={"lr": "2e-3", "sweep": {"lr": 2e-3, "tinit": 100}},
    )
    assert r.level == 4 and r.lr == 2e-3
    assert r.tags == {"score": "magnitude", "schedule": "linear"} and r.schedule == "linear"
    assert not r.is_main() and r.is_main(["tinit"]) and r.other_sweep == {"tinit": 100}


def test_group_keeps_order_values_and_none():
    runs = [run("a", lr=None), run("b", lr=1e-3), run("c", lr=None), run("d", lr=1e-3)]
    by_lr = group(runs, "lr")
    assert list(by_lr) == [None, 1e-3]
    assert [r.name for r in by_lr[None]] == ["a", "c"]
    assert type(next(k for k in by_lr if k is not None)) is float  # not numpy
    two = group(runs, "level", lambda r: r.name < "c")
    assert list(two) == [(2, True), (2, False)] and type(next(iter(two))[0]) is int
    assert group([], "lr") == {}


def test_stats_counts_statuses_and_is_order_free():
    runs = [run(main=v) for v in (0.1, 0.2, 0.7)] + [run(status="diverged", main=None)]
    st = stats_of(runs)
    assert st.n == 3 and dict(st.other) == {"diverged": 1}
    assert st.mean == stats_of(runs[::-1]).mean and st.std == stats_of(runs[::-1]).std


def test_best_lr_most_runs_then_mean_then_smaller_lr():
    runs = [run(lr=1e-3, main=0.7, seed=s) for s in (1, 2)]
    runs += [run(lr=2e-3, main=0.7, seed=s) for s in (1, 2)]  # tie: the smaller LR wins
    runs += [run(lr=5e-3, main=0.99)]  # fewer seeds: cannot win
    runs += [run(lr=2e-3, status="diverged", main=None, seed=3)]
    st = best_lr_stats(runs)
    assert st.lr == 2e-3 and st.n == 2 and dict(st.other) == {"diverged": 1}
    runs.pop()
    st = best_lr_stats(runs)
    assert st.lr == 1e-3 and st.lr_known and st.mean == pytest.approx(70.0)
    nothing = best_lr_stats([run(status="diverged", main=None)])
    assert not nothing.lr_known and dict(nothing.other) == {"diverged": 1}


def test_shared_lr():
    lora = [run(method="lora", lr=lr, main=m) for lr, m in ((1e-3, 0.6), (2e-3, 0.7))]
    ada = [run(lr=lr, main=m) for lr, m in ((1e-3, 0.9), (2e-3, 0.7), (5e-3, 0.99))]
    assert shared_lr(lora, ada) == 1e-3  # (60 + 90) / 2 > (70 + 70) / 2; 5e-3 not shared
    assert shared_lr(lora, []) is None
    assert shared_lr(lora[1:], ada[:1]) is None


def test_constant_predictions_are_not_read_as_divergence():
    """A 'diverged' file whose training loss stayed finite (its final Pearson is nan because
    the model predicts one value) reads as 'constant'; a nan loss keeps 'diverged'. The runner
    writes 'constant' itself now (experiments.record.status)."""
    from experiments.record import status

    nan = float("nan")
    finite = [{"step": 50, "loss": 2.2}, {"step": 100, "loss": 2.1}]
    rec = {"status": "diverged", "metrics": {"main_final": nan}, "train_log": finite}
    assert Run.from_record(rec).status == "constant"
    blown = {**rec, "train_log": finite + [{"step": 150, "loss": nan}]}
    assert Run.from_record(blown).status == "diverged"
    assert Run.from_record({**rec, "train_log": []}).status == "diverged"  # nothing to tell by
    for diverged, final, want in ((False, nan, "constant"), (True, nan, "diverged"),
                                  (False, 0.8, "ok"), (False, None, "ok")):  # fmt: skip
        assert status(_outcome(diverged), {"main_final": final}) == want


def _outcome(diverged: bool):
    from types import SimpleNamespace

    return SimpleNamespace(diverged=diverged)


def test_report_labels_and_orders_come_from_the_registries():
    """Every method of experiments/methods.py METHODS has its registry label and a place in the
    paper's method order (paper-only methods first where Table 1 has them); every GLUE task of
    experiments/tasks.py TASKS is a column of the paper's table, labelled by GLUE's name."""
    from experiments.methods import METHODS
    from experiments.tasks import TASKS
    from scripts import paper_numbers as P
    from scripts.report.fmt import method_name, task_name
    from scripts.report.records import METHOD_ORDER, method_key

    for name, m in METHODS.items():
        assert method_name(name) == m.label
        assert name in METHOD_ORDER
    assert method_name("hadapter") == "hadapter"  # not run here: the paper's rows carry labels
    assert sorted(METHODS, key=method_key)[:4] == ["full", "bitfit", "lora", "adalora"]
    assert method_key("hadapter") < method_key("lora")
    assert set(P.GLUE_TASKS) == set(TASKS)
    assert [task_name(t) for t in ("sst2", "stsb", "xsum")] == ["SST-2", "STS-B", "XSum"]
