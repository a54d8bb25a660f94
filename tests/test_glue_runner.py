"""End to end tests of experiments/glue.py (and so of the shared path in experiments/train.py).

Offline and on CPU: tiny BERT / DeBERTa-v2 models built from a config and saved with the packaged
MiniLM WordPiece tokenizer, GLUE-format files written by the test, runs of a few steps through
``glue.main([...])`` in-process (it returns the result record).
"""

from __future__ import annotations

import json
import math
import shlex
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from experiments import glue
from experiments.data.glue import load_glue
from experiments.results import REQUIRED_KEYS, SCHEMA
from experiments.tasks import TASKS
from tests.helpers import glue_examples, save_tiny_model, write_glue_dir

ROOT = Path(__file__).resolve().parents[1]

REAL_GLUE = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"
TIMING_KEYS = ("runtime", "samples_per_second", "steps_per_second")


# --------------------------------------------------------------------------- fixtures
# bert_dir and glue_dir: tests/conftest.py
@pytest.fixture(scope="module")
def deberta_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-deberta", "deberta")


def flags(model, data_dir, out, run_name, task="rte", method="adalora", steps=2, *extra):
    return [
        "--task",
        task,
        "--method",
        method,
        "--model",
        str(model),
        "--data-dir",
        str(data_dir),
        "--output-dir",
        str(out),
        "--run-name",
        run_name,
        "--max-steps",
        str(steps),
        "--batch-size",
        "4",
        "--eval-batch-size",
        "8",
        "--max-length",
        "32",
        "--wandb",
        "disabled",
        *extra,
    ]


def adapter_flags(*extra):
    """An AdaLoRA schedule that fits 6 steps: scores update at t = 1..3 before the final mask."""
    return ("--tinit", "1", "--tfinal", "2", "--target-r", "2", "--evals", "2", *extra)


def assert_curve(record, shape="cubic"):
    """The logged budget b(t) is the schedule's, non-increasing, and ends at b(T)."""
    from adalora.schedule import budget_at

    b, hp = record["budget"], record["hyperparameters"]
    curve = b["curve"]
    # one allocation per optimizer step, at t = the steps completed before it (0-based, as PEFT)
    assert [s for s, _ in curve] == list(range(hp["total_step"]))
    budgets = [v for _, v in curve]
    assert all(x >= y for x, y in zip(budgets, budgets[1:])), budgets
    assert budgets[0] <= b["init_total_rank"]
    assert budgets[-1] == b["target_total_rank"] == b["final_total_rank"]
    for t, v in curve:
        assert (
            v
            == budget_at(
                t,
                b["init_total_rank"],
                b["target_total_rank"],
                hp["tinit"],
                hp["tfinal"],
                hp["total_step"],
                hp["delta_t"],
                shape,
            ).budget
        )
    assert sum(record["rank_pattern"].values()) == b["target_total_rank"]


def strip_timing(evals):
    return [{k: v for k, v in e.items() if k not in TIMING_KEYS} for e in evals]


# --------------------------------------------------------------------------- fixture files
def test_fixture_files_follow_the_glue_layout(glue_dir):
    mrpc = (glue_dir / "MRPC" / "train.tsv").read_bytes()
    assert mrpc.startswith(b"\xef\xbb\xbfQuality\t")
    assert (glue_dir / "MNLI" / "dev_matched.tsv").is_file()
    assert (glue_dir / "MNLI" / "dev_mismatched.tsv").is_file()
    assert not (glue_dir / "CoLA" / "train.tsv").read_text().startswith("sentence")  # no header
    for task, meta in TASKS.items():
        for split in meta.splits:
            rows = load_glue(task, split, glue_dir)
            n = 16 if split == "train" else 8
            assert len(rows) == n, (task, split)  # the quoted field swallowed no line
            assert rows[0]["sentence1"] == '"quoted start of a sentence'
            assert rows[1:] == glue_examples(task, n, split)[1:]


# --------------------------------------------------------------------------- every task
TASK_MODELS = {
    "cola": "bert",
    "sst2": "bert",
    "mrpc": "deberta",
    "qqp": "bert",
    "stsb": "deberta",
    "mnli": "deberta",
    "qnli": "bert",
    "rte": "bert",
}


@pytest.mark.parametrize("task", list(TASK_MODELS))
def test_every_task_end_to_end(task, request, glue_dir, tmp_path):
    model = request.getfixturevalue(f"{TASK_MODELS[task]}_dir")
    meta = TASKS[task]
    rec = glue.main(flags(model, glue_dir, tmp_path, f"{task}-run", task, "adalora", 2))
    assert rec["task"] == task and rec["status"] == "ok"
    assert rec["model_type"] == {"bert": "bert", "deberta": "deberta-v2"}[TASK_MODELS[task]]
    assert rec["n_train"] == 16 and rec["n_eval"] == {s: 8 for s in meta.eval_splits}
    m = rec["metrics"]
    assert m["main"] == meta.main_metric and m["primary_split"] == meta.eval_splits[0]
    # evals at steps 1 and 2 (quick preset: 2 evaluations), for every eval split
    assert {(e["step"], e["split"]) for e in m["evals"]} == {
        (s, split) for s in (1, 2) for split in meta.eval_splits
    }
    assert set(m["final"]) == set(meta.eval_splits)
    for split in meta.eval_splits:
        assert set(meta.metrics) <= set(m["final"][split])
    if task == "mnli":
        assert {"validation_matched", "validation_mismatched"} <= {e["split"] for e in m["evals"]}
    if task == "stsb":
        assert {"pearson", "spearman"} <= set(m["final"]["validation"])
    assert isinstance(m["main_best"], float) and isinstance(m["main_final"], float)
    assert m["main_best"] >= m["main_final"] or math.isnan(m["main_final"])
    assert json.loads((tmp_path / f"{task}-run.json").read_text())["metrics"]["evals"] == m["evals"]


# --------------------------------------------------------------------------- every method
@pytest.mark.parametrize("method", ["adalora", "lora", "full", "bitfit", "svd_lora", "prune_lora"])
def test_every_method_end_to_end(method, bert_dir, glue_dir, tmp_path):
    rec = glue.main(flags(bert_dir, glue_dir, tmp_path, method, "rte", method, 6, *adapter_flags()))
    assert rec["method"] == method and rec["status"] == "ok" and rec["variant"] == ""
    p, b, hp = rec["params"], rec["budget"], rec["hyperparameters"]
    assert 0 < p["trainable"] <= p["total"]
    if method in ("full", "bitfit"):
        assert b is None and rec["rank_pattern"] is None and p["final_adapter"] is None
        head = 32 * 2 + 2  # classifier of the tiny BERT (the pooler is a head too)
        if method == "full":
            assert p["trainable"] == p["total"]
        else:
            assert head < p["trainable"] < p["total"] // 10
        return
    assert b["n_modules"] == 12 and b["target_total_rank"] == 24  # 2 layers x 6 matrices x r 2
    ranks = rec["rank_pattern"]
    assert len(ranks) == 12 and all(isinstance(r, int) for r in ranks.values())
    if method in ("adalora", "prune_lora"):
        assert hp["init_r"] == 3 and b["init_total_rank"] == 36
        assert_curve(rec)
        assert b["final_total_rank"] == 24
    else:
        assert b["curve"] is None and set(ranks.values()) == {2} and b["final_total_rank"] == 24
    if method == "lora":
        assert hp["lora_r"] == hp["target_r"] == 2  # matched budget: r = b(T) / n
    if method == "prune_lora":
        assert hp["orth_reg_weight"] == 0.0  # LoRA has no orthogonality to regularise


def test_lora_budget_matches_adalora(bert_dir, glue_dir, tmp_path):
    """Same-shaped targets (query/key/value: 32 x 32), so that AdaLoRA's final r_i (in + out + 1)
    summed over modules equals LoRA's r (in + out) n plus one lambda per kept triplet."""
    common = adapter_flags("--target-modules", "query,key,value")
    ada = glue.main(flags(bert_dir, glue_dir, tmp_path, "ada", "rte", "adalora", 6, *common))
    lora = glue.main(flags(bert_dir, glue_dir, tmp_path, "lora", "rte", "lora", 6, *common))
    assert ada["budget"]["n_modules"] == lora["budget"]["n_modules"] == 6
    assert lora["hyperparameters"]["lora_r"] == ada["hyperparameters"]["target_r"] == 2
    kept = ada["budget"]["final_total_rank"]
    assert kept == ada["budget"]["target_total_rank"] == 12
    assert lora["params"]["final_adapter"] == 2 * 6 * (32 + 32)
    assert ada["params"]["final_adapter"] - lora["params"]["final_adapter"] == kept


# --------------------------------------------------------------------------- ablations
@pytest.mark.parametrize(
    "extra, tag, shape",
    [
        (["--score", "sensitivity"], "score=sensitivity", "cubic"),
        (["--score", "magnitude"], "score=magnitude", "cubic"),
        (["--orth-reg-weight", "0"], "gamma=0", "cubic"),
        (["--schedule", "linear"], "schedule=linear", "linear"),
        (["--schedule", "constant"], "schedule=constant", "constant"),
    ],
)
def test_ablation_flags(extra, tag, shape, bert_dir, glue_dir, tmp_path):
    rec = glue.main(
        flags(bert_dir, glue_dir, tmp_path, "abl", "rte", "adalora", 6, *adapter_flags(*extra))
    )
    assert rec["variant"] == tag and rec["status"] == "ok"
    hp = rec["hyperparameters"]
    assert hp["score"] == (extra[1] if extra[0] == "--score" else "triplet")
    assert hp["schedule"] == shape
    assert hp["orth_reg_weight"] == (0.0 if tag == "gamma=0" else 0.3)  # quick preset RTE: 0.3
    assert_curve(rec, shape)


# --------------------------------------------------------------------------- result file
@pytest.fixture(scope="module")
def first_run(bert_dir, glue_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    argv = flags(bert_dir, glue_dir, out, "rte-first", "rte", "adalora", 4, "--seed", "7")
    return glue.main(argv), out / "rte-first.json", argv


def test_result_file_schema(first_run):
    rec, path, argv = first_run
    on_disk = json.loads(path.read_text())
    assert set(REQUIRED_KEYS) <= set(on_disk)
    assert on_disk == json.loads(json.dumps(rec, default=str))
    r = on_disk
    assert r["schema"] == SCHEMA and r["kind"] == "glue" and r["run_name"] == "rte-first"
    assert (r["task"], r["method"], r["variant"], r["preset"], r["status"]) == (
        "rte",
        "adalora",
        "",
        "quick",
        "ok",
    )
    assert r["model"] == argv[argv.index("--model") + 1] and r["model_type"] == "bert"
    assert r["seed"] == 7 and type(r["seed"]) is int
    # the training curve: one row per logging step, in step order, ending at T
    steps = [row["step"] for row in r["train_log"]]
    assert steps and steps == sorted(steps) and steps[-1] <= r["hyperparameters"]["total_step"]
    assert all(math.isfinite(row["loss"]) and "learning_rate" in row for row in r["train_log"])
    assert type(r["n_train"]) is int and all(type(v) is int for v in r["n_eval"].values())
    hp = r["hyperparameters"]
    for k in (
        "lr",
        "epochs",
        "batch_size",
        "max_length",
        "init_r",
        "target_r",
        "lora_alpha",
        "tinit",
        "tfinal",
        "delta_t",
        "beta1",
        "beta2",
        "orth_reg_weight",
        "warmup",
        "weight_decay",
        "cls_dropout",
        "total_step",
        "score",
        "schedule",
    ):
        assert k in hp, k
    assert hp["total_step"] == 4 and hp["batch_size"] == 4 and hp["max_length"] == 32
    assert set(r["budget"]) >= {
        "n_modules",
        "init_total_rank",
        "final_total_rank",
        "target_total_rank",
        "avg_final_rank",
        "curve",
    }
    assert all(type(r["params"][k]) is int for k in ("trainable", "final_adapter", "total"))
    assert all(type(v) is int for v in r["rank_pattern"].values())
    m = r["metrics"]
    assert m["table_uses"] in ("best", "final") and isinstance(m["evals"], list)
    for e in m["evals"]:
        assert (
            type(e["step"]) is int and isinstance(e["epoch"], float) and isinstance(e["split"], str)
        )
        assert isinstance(e["accuracy"], float)
    assert isinstance(r["wall_time_s"], (int, float)) and r["wall_time_s"] > 0
    assert {"python", "torch", "transformers", "adalora"} <= set(r["versions"])
    assert r["hardware"]["device"] == "cpu" and r["hardware"]["gpu"] is None
    import torch

    hw = r["hardware"]
    assert hw["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert isinstance(hw["cpu_native_bf16"], bool)
    assert datetime.fromisoformat(r["created"]).tzinfo is not None
    # the exact command: the interpreter, the runner script, then argv verbatim
    cmd = shlex.split(r["command"])
    assert cmd[1] == "experiments/glue.py" and cmd[2:] == argv


def test_same_seed_same_metrics(first_run, tmp_path):
    rec, _, argv = first_run
    argv = list(argv)
    argv[argv.index("--run-name") + 1] = "rte-again"
    argv[argv.index("--output-dir") + 1] = str(tmp_path)
    again = glue.main(argv)
    assert strip_timing(again["metrics"]["evals"]) == strip_timing(rec["metrics"]["evals"])
    assert again["rank_pattern"] == rec["rank_pattern"]
    assert again["budget"] == rec["budget"]
    assert again["hyperparameters"] == rec["hyperparameters"]


# --------------------------------------------------------------------------- bad input
# (tests/test_validation.py covers every validated input; these keep the runner's own cases)
def no_results(out: Path):
    return not out.exists() or not list(out.glob("*.json"))


def error_line(capsys, argv) -> str:
    """glue.main(argv) must stop with exit status 2 and one error line on stderr: that line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        glue.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1, err
    assert err[0].startswith("glue.py: error: ")
    return err[0]


def test_result_file_is_never_overwritten(first_run, capsys):
    rec, path, argv = first_run
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    assert "--run-name rte-first" in error_line(capsys, argv)
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in path.parent.iterdir()) == ["rte-first.json"]  # no temp files left


def test_missing_data_dir(bert_dir, tmp_path, capsys):
    missing = tmp_path / "no-glue-here"
    msg = error_line(capsys, flags(bert_dir, missing, tmp_path / "out", "x"))
    assert f"--data-dir {missing}: no such folder" in msg
    missing.mkdir()  # a folder without the task's files
    msg = error_line(capsys, flags(bert_dir, missing, tmp_path / "out", "x"))
    assert str(missing / "RTE" / "train.tsv") in msg and "--data-dir" in msg and "GLUE_DIR" in msg
    assert no_results(tmp_path / "out")


def test_hub_offline_without_data_dir(bert_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("GLUE_DIR", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    argv = flags(bert_dir, "x", tmp_path, "x")
    i = argv.index("--data-dir")
    del argv[i : i + 2]
    assert error_line(capsys, argv).startswith("glue.py: error: --data-dir: cannot load")
    assert no_results(tmp_path)


def test_hub_model_while_offline(glue_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    msg = error_line(capsys, flags("adalora-tests/no-such-model", glue_dir, tmp_path, "x"))
    assert "--model adalora-tests/no-such-model" in msg and "offline" in msg
    assert "--model PATH" in msg and "local model folder" in msg
    assert no_results(tmp_path)


def test_schedule_without_budgeting_phase(bert_dir, glue_dir, tmp_path, capsys):
    argv = flags(bert_dir, glue_dir, tmp_path, "x", "rte", "adalora", 8, "--tinit", "5")
    msg = error_line(capsys, [*argv, "--tfinal", "5"])
    assert "--tinit 5: no budgeting phase: tinit + tfinal = 5 + 5 >= T = 8" in msg
    assert no_results(tmp_path)


def test_target_rank_above_initial_rank(bert_dir, glue_dir, tmp_path, capsys):
    argv = flags(bert_dir, glue_dir, tmp_path, "x", "rte", "adalora", 4, "--target-r", "8")
    msg = error_line(capsys, [*argv, "--init-r", "4"])
    assert "--target-r 8: final average rank target_r 8 > init_r 4" in msg
    assert no_results(tmp_path)


# --------------------------------------------------------------------------- dry run
def parse_dry_run(out: str) -> dict:
    return json.loads(out[out.index("{") :])


def test_paper_dry_run_rte_offline(tmp_path, capsys, monkeypatch):
    """The paper preset's dry run works although DeBERTaV3-base cannot be downloaded: the budget
    uses its known 72 matrices, a warm-up in steps resolves, T needs the data and is listed as
    unresolved together with the reason the model could not be loaded; nothing is written. (The
    preset's values against the authors' scripts: tests/test_guard_reference.py.)"""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("GLUE_DIR", raising=False)
    argv = ["--preset", "paper", "--task", "rte", "--method", "adalora"]
    assert glue.main([*argv, "--dry-run", "--output-dir", str(tmp_path)]) is None
    cfg = parse_dry_run(capsys.readouterr().out)
    assert (cfg["task"], cfg["method"], cfg["preset"]) == ("rte", "adalora", "paper")
    assert (cfg["n_modules"], cfg["budget"]) == (72, 72 * cfg["target_r"])
    assert cfg["warmup_steps"] == cfg["warmup"] >= 1
    assert "microsoft/deberta-v3-base" in cfg["unresolved"]["model"]
    assert "total_step" in cfg["unresolved"] and cfg.get("total_step") is None
    assert not list(tmp_path.iterdir())  # a dry run writes nothing


def test_dry_run_with_local_model_resolves_everything(bert_dir, glue_dir, tmp_path, capsys):
    glue.main(
        flags(bert_dir, glue_dir, tmp_path, "dry", "rte", "lora", 2, "--target-r", "2", "--dry-run")
    )
    cfg = parse_dry_run(capsys.readouterr().out)
    assert cfg["unresolved"] == {}
    assert (cfg["n_modules"], cfg["budget"], cfg["lora_r"], cfg["total_step"]) == (12, 24, 2, 2)
    assert cfg["n_train"] == 16 and cfg["n_eval"] == {"validation": 8}
    assert no_results(tmp_path)


# --------------------------------------------------------------------------- W&B
def _wandb_records(run_dir: Path) -> list[dict]:
    """Every record of the offline run's .wandb log, read back with `wandb leet inspect --json`
    (wandb >= 0.2x ships it; one JSON object per line)."""
    # The console script installed with this interpreter's wandb first: `.venv/bin/python -m
    # pytest` without an activated venv has no wandb on PATH, and would otherwise skip.
    exe = shutil.which("wandb", path=str(Path(sys.executable).parent)) or shutil.which("wandb")
    if exe is None:
        pytest.skip("no wandb command beside this Python or on PATH")
    log = next(run_dir.glob("run-*.wandb"))
    out = subprocess.run(
        [exe, "leet", "inspect", "--json", str(log)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_wandb_offline_run_reads_back(bert_dir, glue_dir, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    argv = flags(
        bert_dir, glue_dir, tmp_path / "runs", "wb-run", "rte", "adalora", 6, *adapter_flags()
    )
    argv[argv.index("--wandb") + 1] = "offline"
    rec = glue.main(argv)
    run_dirs = list((tmp_path / "wandb").glob("offline-run-*"))  # wandb dir = output dir's parent
    assert len(run_dirs) == 1, list(tmp_path.rglob("*"))
    records = _wandb_records(run_dirs[0])
    run = next(r["run"] for r in records if r["type"] == "run")
    assert run["display_name"] == "wb-run" and set(run["tags"]) == {"rte", "adalora"}
    config = run["config"]["update"]
    assert (config["task"], config["method"], config["budget"]) == ("rte", "adalora", 24)
    history = [r["history"]["item"] for r in records if r["type"] == "history"]
    mains = [h["eval/main"] for h in history if "eval/main" in h]
    assert mains == [e["accuracy"] for e in rec["metrics"]["evals"]]
    budgets = {
        h["train/global_step"]: h[k] for h in history for k in h if k.endswith("adalora/budget")
    }
    # the row logged at global step g carries the budget of the allocation at t = g - 1
    curve = rec["budget"]["curve"]
    assert budgets and all(budgets[t + 1] == b for t, b in curve if t + 1 in budgets)
    summary = {}
    for r in records:
        if r["type"] == "summary":
            summary.update(r["summary"]["update"])
    assert summary["eval/main_best"] == rec["metrics"]["main_best"]
    assert summary["params/final_adapter"] == rec["params"]["final_adapter"]


# --------------------------------------------------------------------------- real data
@pytest.mark.skipif(
    not (REAL_GLUE / "CoLA" / "train.tsv").is_file(),
    reason=f"GLUE CoLA not found under {REAL_GLUE} (shared data folder absent)",
)
def test_packaged_minilm_on_real_cola(tmp_path):
    rec = glue.main(
        [
            "--task",
            "cola",
            "--method",
            "adalora",
            "--model",
            "minilm",
            "--data-dir",
            str(REAL_GLUE),
            "--output-dir",
            str(tmp_path),
            "--run-name",
            "cola",
            "--max-train-samples",
            "64",
            "--max-eval-samples",
            "64",
            "--max-steps",
            "4",
            "--batch-size",
            "16",
            "--wandb",
            "disabled",
        ]
    )
    assert rec["status"] == "ok" and rec["model_type"] == "bert"
    assert rec["n_train"] == 64 and rec["n_eval"] == {"validation": 64}
    assert rec["budget"]["n_modules"] == 36  # 6 layers x 6 matrices
    assert rec["metrics"]["main"] == "mcc" and -1.0 <= rec["metrics"]["main_best"] <= 1.0
    assert (tmp_path / "cola.json").is_file()


@pytest.mark.skipif(
    not (REAL_GLUE / "SST-2" / "train.tsv").is_file(),
    reason=f"GLUE SST-2 not found under {REAL_GLUE} (shared data folder absent)",
)
def test_readme_main_run_then_tables(monkeypatch):
    """The README's commands in order, tiny: the main run (GLUE_DIR, default output dir) writes
    its result under results/runs/, and the committed tables (scripts/make_tables.py --check,
    which reads results/evidence/) are still current. The test removes the file it wrote."""
    from experiments.config import DEFAULT_OUTPUT_DIR

    assert DEFAULT_OUTPUT_DIR == ROOT / "results" / "runs"
    monkeypatch.setenv("GLUE_DIR", str(REAL_GLUE))
    argv = ["--task", "sst2", "--method", "adalora", "--max-steps", "3", "--wandb", "disabled"]
    argv += ["--max-train-samples", "32", "--max-eval-samples", "32"]
    path = None
    try:
        rec = glue.main(argv)
        path = DEFAULT_OUTPUT_DIR / f"{rec['run_name']}.json"
        assert path.is_file() and json.loads(path.read_text())["run_name"] == rec["run_name"]
        assert rec["status"] == "ok" and rec["n_train"] == 32
        check = subprocess.run(
            [sys.executable, "scripts/make_tables.py", "--check"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
    finally:
        if path is not None:
            path.unlink(missing_ok=True)


def test_torchrun_two_processes_agree(tmp_path):
    """2-process DDP (gloo, CPU) through torchrun: the run checks that both ranks end with the
    same rank mask (it raises otherwise) and rank 0 alone writes the result."""
    import os

    model = save_tiny_model(tmp_path / "tiny")
    data = write_glue_dir(tmp_path / "glue", tasks=["rte"], n_train=64, n_eval=16)
    out = tmp_path / "runs"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        str(ROOT / "experiments" / "glue.py"),
        "--task",
        "rte",
        "--method",
        "adalora",
        "--model",
        str(model),
        "--data-dir",
        str(data),
        "--max-steps",
        "8",
        "--tinit",
        "2",
        "--tfinal",
        "2",
        "--batch-size",
        "4",
        "--wandb",
        "disabled",
        "--output-dir",
        str(out),
        "--run-name",
        "ddp",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = sorted(p.name for p in out.glob("*.json"))
    assert files == ["ddp.json"]
    rec = json.loads((out / "ddp.json").read_text())
    assert rec["hardware"]["world_size"] == 2
    assert rec["hyperparameters"]["total_step"] == 8
    assert sum(rec["rank_pattern"].values()) == rec["budget"]["target_total_rank"]


def test_best_evaluation_skips_undefined_scores():
    """Pearson of constant predictions is nan: the best evaluation is the best defined one."""
    from experiments.record import eval_metrics

    evals = [
        {"step": s, "epoch": s / 10, "split": "validation", "pearson": v}
        for s, v in ((10, math.nan), (20, 0.5), (30, 0.4))
    ]
    m = eval_metrics(evals, "pearson", ["validation"])
    assert m["main_best"] == 0.5 and m["best_step"] == 20 and m["main_final"] == 0.4
