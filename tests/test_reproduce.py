"""scripts/reproduce.py: the planned runs' commands and checkpoints, resuming from existing result
files and from a half-finished run, --hours, and every bad input as one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import plan_converged, reproduce
from scripts.grid import pool
from scripts.grid.pool import Outcome

ROOT = Path(__file__).resolve().parents[1]


def _jobs(*names: str) -> list:
    return [plan_converged.Job("sweep", n, ("--task", "rte", "--seed", "1"), 0) for n in names]


def test_dry_run_skips_finished_runs(tmp_path, monkeypatch, capsys):
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "done.json").write_text(json.dumps({"status": "ok"}))
    monkeypatch.setattr(plan_converged, "plan", lambda r: _jobs("done", "todo"))
    assert reproduce.main(["--output-dir", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 runs planned so far, 1 done, 1 to run\n")
    assert "--run-name done " not in out and "--run-name todo " in out


def test_every_run_saves_checkpoints(tmp_path):
    """Every planned command passes --save-steps SAVE_STEPS, so a killed grid run continues from
    its last checkpoint when the grid re-runs its command."""
    for j in plan_converged.plan(tmp_path):
        argv = reproduce.converged_run(j, tmp_path).argv
        assert argv[-2:] == ("--save-steps", str(reproduce.SAVE_STEPS))


def test_half_finished_run_resumes(tmp_path, monkeypatch, capsys):
    """A run killed half-way (checkpoints, no result file) is resumed by the grid, not restarted:
    its log says so, its result file appears and its checkpoints are gone."""
    import shutil

    from experiments import glue
    from experiments.checkpoints import checkpoint_root
    from tests.helpers import save_tiny_model, write_glue_dir

    model = save_tiny_model(tmp_path / "tiny")
    data = write_glue_dir(tmp_path / "glue", tasks=["rte"], n_train=16, n_eval=8)
    root, name = tmp_path / "grid", "repro-half"
    out = root / "sweep"  # the job's stage folder
    flags = ["--task", "rte", "--model", str(model), "--data-dir", str(data), "--max-steps", "12"]
    flags += ["--batch-size", "4", "--max-length", "32", "--wandb", "disabled"]
    glue.main([*flags, "--output-dir", str(out), "--run-name", name, "--save-steps", "4",
               "--keep-checkpoints"])  # fmt: skip
    (out / f"{name}.json").unlink()  # then make it half-finished:
    shutil.rmtree(checkpoint_root(out, name) / "checkpoint-12")
    monkeypatch.setattr(reproduce, "SAVE_STEPS", 4)  # as the run was started
    monkeypatch.setattr(
        plan_converged, "plan", lambda r: [plan_converged.Job("sweep", name, tuple(flags), 0)]
    )
    assert reproduce.main(["--output-dir", str(root), "--workers", "1"]) == 0
    log = (root / "logs" / f"{name}.log").read_text()
    assert "resuming from" in log and "checkpoint-8" in log, log[-2000:]
    assert json.loads((out / f"{name}.json").read_text())["run_name"] == name
    assert not checkpoint_root(out, name).exists()
    assert "1 runs planned so far, 0 done, 1 to run" in capsys.readouterr().out


def test_hours_passes_over_runs_that_would_not_finish(tmp_path, monkeypatch, capsys):
    """--hours: a run whose task / method / epochs took longer than the time left is not
    started, and the header counts it as passed over; a later run that fits (or whose time is
    unknown) is."""
    root = tmp_path / "converged"
    (root / "sweep").mkdir(parents=True)
    # a 10-epoch STS-B LoRA run took an hour: 360 s per epoch
    landed = {"task": "stsb", "method": "lora", "hyperparameters": {"epochs": 10},
              "wall_time_s": 3600.0}  # fmt: skip
    (root / "sweep" / "old.json").write_text(json.dumps(landed))
    base = ["--epochs", "7", "--method", "adalora"]
    jobs = [
        plan_converged.Job("sweep", "long", ("--task", "stsb", *base), 1),
        plan_converged.Job("sweep", "short", ("--task", "cola", *base), 1),
    ]
    # no AdaLoRA run of STS-B yet: the task's other runs, per epoch, x 7 epochs = 42 minutes
    assert reproduce.estimate_s(jobs[0].flags, reproduce.run_times(root)) == 7 * 360.0
    assert reproduce.estimate_s(jobs[1].flags, reproduce.run_times(root)) is None
    monkeypatch.setattr(plan_converged, "plan", lambda r: jobs)
    started = []

    def fake_run(run, env, python=None, timeout_s=None):
        started.append(run.name)
        run.result.write_text("{}")
        return Outcome(run.name, 0, 0.0)

    monkeypatch.setattr(pool, "execute", fake_run)
    assert reproduce.main(["--output-dir", str(root), "--hours", "0.5", "--workers", "1"]) == 0
    assert started == ["short"]  # no CoLA time known: it may take half the budget, and fits
    assert capsys.readouterr().out.startswith(
        "1 runs planned so far, 0 done, 1 to run; 1 more passed over (expected to end after "
        "--hours 0.5)\n"
    )
    # 18 of the 30 minutes gone: a run of unknown length (half the budget) no longer starts
    (root / "sweep" / "short.json").unlink()
    started.clear()
    clock = iter([0.0] + [18 * 60.0] * 100)
    monkeypatch.setattr(reproduce.time, "time", lambda: next(clock))
    assert reproduce.main(["--output-dir", str(root), "--hours", "0.5", "--workers", "1"]) == 0
    assert started == []
    assert "0 runs planned so far, 0 done, 0 to run; 2 more passed over" in capsys.readouterr().out
    monkeypatch.undo()
    monkeypatch.setattr(plan_converged, "plan", lambda r: jobs)
    monkeypatch.setattr(pool, "execute", fake_run)
    assert reproduce.main(["--output-dir", str(root), "--workers", "1"]) == 0  # no limit
    assert started == ["long", "short"]


def test_hours_estimate_reads_the_latest_runs_of_the_closest_group(tmp_path, monkeypatch):
    """The estimate reads landed runs of the same task, method and --target-r first, then of
    the task and method, then of the task; of those, the RECENT_RUNS latest (machines differ)."""
    monkeypatch.setattr(reproduce, "RECENT_RUNS", 2)
    root = tmp_path / "converged"
    (root / "sweep").mkdir(parents=True)
    landed = [("a", "lora", 2, 900.0, "2026-01-01"), ("b", "lora", 2, 400.0, "2026-01-02"),
              ("c", "lora", 2, 400.0, "2026-01-03"), ("d", "lora", 8, 700.0, "2026-01-04"),
              ("e", "adalora", 2, 300.0, "2026-01-05")]  # fmt: skip
    for name, method, r, wall, created in landed:
        hp = {"epochs": 10, "target_r": float(r)}
        rec = {"task": "cola", "method": method, "hyperparameters": hp, "wall_time_s": wall,
               "created": created}  # fmt: skip
        (root / "sweep" / f"{name}.json").write_text(json.dumps(rec))
    times = reproduce.run_times(root)

    def est(method, r):
        flags = ("--task", "cola", "--method", method, "--target-r", str(r), "--epochs", "9")
        return reproduce.estimate_s(flags, times)

    assert est("lora", 8) == 9 * 70.0
    assert est("lora", 2) == 9 * 40.0  # the slow first run is not among the 2 latest
    assert est("lora", 1) == 9 * 70.0  # no r = 1 yet: the task's 2 latest LoRA runs (c, d)
    assert est("adalora", 8) == 9 * 30.0  # no AdaLoRA r = 8 yet: its r = 2 run
    assert est("full", 2) == 9 * 70.0  # no full run yet: the task's 2 latest runs (d, e)
    assert reproduce.estimate_s(("--task", "rte", "--method", "lora"), times) is None


# reproduce.py's bad input: argv -> the one line on stderr (exit status 2, nothing written).
BAD = {
    "workers-0": (
        ["--workers", "0"],
        "--workers 0: must be a positive integer; pass --workers 1 or more",
    ),
    "hours-nan": (
        ["--hours", "nan"],
        "--hours nan: must be a number of hours, finite and > 0; pass e.g. --hours 4",
    ),
    "hours-inf": (
        ["--hours", "inf"],
        "--hours inf: must be a number of hours, finite and > 0; pass e.g. --hours 4",
    ),
    "hours-0": (
        ["--hours", "0"],
        "--hours 0: must be a number of hours, finite and > 0; pass e.g. --hours 4",
    ),
    "hours-text": (
        ["--hours", "x"],
        "argument --hours: invalid float value: 'x' (--help lists the flags)",
    ),
    "hours-slurm": (
        ["--launcher", "slurm", "--dry-run", "--hours", "1"],
        "--hours 1: only with --launcher local; "
        "with SLURM, --time limits each job and a cut run resumes",
    ),
    "both-counts": (
        ["--workers", "2", "--runs-per-gpu", "2"],
        "--runs-per-gpu 2: and --workers both set how many runs go at once; "
        "give --workers N (CPU processes) or --runs-per-gpu K (K runs on each GPU), not both",
    ),
    "slurm-flag-locally": (
        ["--time", "60"],
        "--time 60: only with --launcher slurm (or slurm-local); "
        "add --launcher slurm, or drop --time",
    ),
    "slurm-array-0": (
        ["--launcher", "slurm", "--dry-run", "--array-parallelism", "0"],
        "--array-parallelism 0: must be a positive integer; pass --array-parallelism 1 or more",
    ),
    "slurm-gpus-negative": (
        ["--launcher", "slurm", "--dry-run", "--gpus-per-job", "-1"],
        "--gpus-per-job -1: must be an integer >= 0; pass --gpus-per-job 0 (CPU jobs) or more",
    ),
    "slurm-mem-nan": (
        ["--launcher", "slurm", "--dry-run", "--mem-gb", "nan"],
        "--mem-gb nan: must be gigabytes, finite and > 0; pass e.g. --mem-gb 16",
    ),
    "slurm-partition": (
        ["--launcher", "slurm", "--dry-run", "--partition", "a b"],
        "--partition 'a b': not a partition name; pass the name sinfo lists, e.g. --partition gpu",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line(case, tmp_path, monkeypatch, capsys):
    argv, line = BAD[case]
    out = tmp_path / "grid"
    started = []
    monkeypatch.setattr(pool, "execute", lambda run, *a, **k: started.append(run))
    with pytest.raises(SystemExit) as e:
        reproduce.main([*argv, "--output-dir", str(out)])
    assert e.value.code == 2
    cap = capsys.readouterr()
    assert cap.err == f"reproduce.py: error: {line}\n" and cap.out == ""
    assert started == [] and not out.exists()


def test_output_dir_that_is_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("")
    with pytest.raises(SystemExit) as e:
        reproduce.main(["--output-dir", str(tmp_path / "f" / "grid"), "--dry-run"])
    assert e.value.code == 2
    assert capsys.readouterr().err == (
        f"reproduce.py: error: --output-dir {tmp_path / 'f' / 'grid'}: {tmp_path / 'f'} is a "
        "file, not a folder; pass a folder path\n"
    )


def test_runs_per_gpu_needs_a_gpu(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(SystemExit):
        reproduce.main(["--runs-per-gpu", "2", "--output-dir", str(tmp_path / "g")])
    assert capsys.readouterr().err == (
        "reproduce.py: error: --runs-per-gpu 2: no GPU is visible here; "
        "use --workers N on CPUs, or run it where a GPU is\n"
    )


def test_a_planned_command_glue_refuses_stops_the_grid(tmp_path, monkeypatch, capsys):
    """Every planned command is checked as glue.py checks it, before anything runs (dry run
    too): a planner bug is one line naming the run, not a failed run later."""
    jobs = [plan_converged.Job("sweep", "ok", ("--task", "rte", "--lr", "1e-3"), 0),
            plan_converged.Job("sweep", "bad", ("--task", "rte", "--lr", "-1"), 0)]  # fmt: skip
    monkeypatch.setattr(plan_converged, "plan", lambda r: jobs)
    started = []
    monkeypatch.setattr(pool, "execute", lambda run, *a, **k: started.append(run))
    for dry in ([], ["--dry-run"]):
        with pytest.raises(SystemExit) as e:
            reproduce.main(["--output-dir", str(tmp_path / "g"), *dry])
        assert e.value.code == 2
        assert capsys.readouterr().err == (
            "reproduce.py: error: --lr -1 (planned run bad): must be a learning rate > 0; "
            "pass a positive learning rate, e.g. --lr 1e-3\n"
        )
    assert started == [] and not (tmp_path / "g").exists()


def test_bf16_grid_on_a_cpu_without_native_bf16_stops_before_any_run(tmp_path, monkeypatch, capsys):
    """The protocol's bf16 runs on a CPU that would emulate bf16: one line, nothing started or
    written (glue.py refuses a given --precision bf16 there; once it trained them in fp32). The
    dry run still prints the plan; with native bf16 the runs start."""
    from experiments import trainer

    jobs = [plan_converged.Job("sweep", "a", ("--task", "rte", "--precision", "bf16"), 0)]
    monkeypatch.setattr(plan_converged, "plan", lambda r: jobs)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr(trainer, "cpu_has_native_bf16", lambda: False)
    started = []

    def fake_run(run, env, python=None, timeout_s=None):
        started.append(run.name)
        run.result.parent.mkdir(parents=True, exist_ok=True)
        run.result.write_text("{}")
        return Outcome(run.name, 0, 0.0)

    monkeypatch.setattr(pool, "execute", fake_run)
    with pytest.raises(SystemExit) as e:
        reproduce.main(["--output-dir", str(tmp_path / "g")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert err.startswith(
        "reproduce.py: error: --precision bf16 (planned run a): this CPU has no native bf16"
    )
    assert "run the grid where that precision is native" in err
    assert err.endswith("(--launcher slurm)\n")
    assert started == [] and not (tmp_path / "g").exists()
    assert reproduce.main(["--output-dir", str(tmp_path / "g"), "--dry-run"]) == 0
    monkeypatch.setattr(trainer, "cpu_has_native_bf16", lambda: True)
    assert reproduce.main(["--output-dir", str(tmp_path / "g"), "--workers", "1"]) == 0
    assert started == ["a"]


def test_bad_input_subprocess(tmp_path):
    r = subprocess.run(
        [sys.executable, "scripts/reproduce.py", "--workers", "0", "--output-dir",
         str(tmp_path / "g")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2 and r.stdout == "" and not (tmp_path / "g").exists()
    assert (
        r.stderr == "reproduce.py: error: --workers 0: must be a positive integer; "
        "pass --workers 1 or more\n"
    )


def test_slurm_dry_run_prints_the_job_script(tmp_path, monkeypatch, capsys):
    pytest.importorskip("submitit")
    jobs = [plan_converged.Job("sweep", f"r{i}", ("--task", "rte", "--seed", str(i)), 0)
            for i in range(6)]  # fmt: skip
    monkeypatch.setattr(plan_converged, "plan", lambda r: jobs)
    argv = ["--launcher", "slurm", "--dry-run", "--partition", "gpu", "--runs-per-gpu", "4",
            "--output-dir", str(tmp_path / "c")]  # fmt: skip
    assert reproduce.main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("6 runs planned so far, 0 done, 6 to run\n")
    assert "#SBATCH --partition=gpu" in out and "#SBATCH --gpus-per-node=1" in out
    assert "#SBATCH --array=0-1%2" in out and "#SBATCH --cpus-per-task=8" in out
    assert out.count("#   experiments/glue.py") == 6 and "--save-steps 200" in out
    assert not (tmp_path / "c").exists()


def test_slurm_without_submitit_is_refused(tmp_path, monkeypatch, capsys):
    from scripts.grid import options

    real = options.importlib.util.find_spec
    monkeypatch.setattr(options.importlib.util, "find_spec",
                        lambda name: None if name == "submitit" else real(name))  # fmt: skip
    with pytest.raises(SystemExit) as e:
        reproduce.main(["--launcher", "slurm", "--dry-run", "--output-dir", str(tmp_path / "g")])
    assert e.value.code == 2 and not (tmp_path / "g").exists()
    assert capsys.readouterr().err == (
        "reproduce.py: error: --launcher slurm: needs the submitit package; "
        "pip install -e '.[cluster]' (or pip install submitit)\n"
    )
