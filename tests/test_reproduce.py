"""scripts/reproduce.py: the grid's expansion (names, flags, priority order, de-duplication),
resuming from existing result files, and a bad --order."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import plan_converged, reproduce
from scripts.checks import BadInput
from scripts.grid import pool
from scripts.grid.pool import Outcome

ROOT = Path(__file__).resolve().parents[1]


def _flags(cmd: list, name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_phase_a_cells_and_flags():
    jobs = reproduce.plan("out", "A:rte")
    names = [n for n, _ in jobs]
    # 3 seeds x 2 budgets x (adalora, lora), seed-major so a cut grid keeps whole seeds
    assert len(names) == 12 and names[0] == "repro-rte-adalora-r2-lr1e-3-s1"
    assert names[3] == "repro-rte-lora-r8-lr1e-3-s1" and names[-1].endswith("-s3")
    cmd = dict(jobs)["repro-rte-lora-r8-lr1e-3-s1"]
    assert _flags(cmd, "--method") == "lora" and _flags(cmd, "--target-r") == "8"
    assert _flags(cmd, "--lr") == "1e-3" and _flags(cmd, "--max-steps") == "150"
    assert _flags(cmd, "--batch-size") == "16" and _flags(cmd, "--output-dir") == "out"


def test_narrowed_b_item_and_dedup():
    jobs = reproduce.plan("out", "B:stsb:2e-4:2,B:stsb")
    names = [n for n, _ in jobs]
    assert names[:6] == [
        f"repro-stsb-{m}-r2-lr2e-4-s{s}" for s in (1, 2, 3) for m in ("adalora", "lora")
    ]
    # the full B item repeats the 2e-4 r=2 runs: each run is planned once, first position kept
    assert len(names) == len(set(names)) == 6 + 3 * 3 * 2 * 2 - 6
    assert not any("lr1e-3" in n for n in names)  # the shared LR belongs to phase A


def test_ablations_and_baselines():
    c = dict(reproduce.plan("out", "C:sst2"))
    assert len(c) == 3 * len(reproduce.ABLATIONS)
    cmd = c["repro-sst2-abl-sensitivity-r2-lr1e-3-s2"]
    assert _flags(cmd, "--score") == "sensitivity" and _flags(cmd, "--method") == "adalora"
    assert _flags(c["repro-sst2-abl-gamma0-r2-lr1e-3-s1"], "--orth-reg-weight") == "0"
    assert _flags(c["repro-sst2-abl-svd_lora-r2-lr1e-3-s3"], "--method") == "svd_lora"
    d = dict(reproduce.plan("out", "D:cola"))
    assert sorted(d) == sorted(
        f"repro-cola-{m}-lr{lr}-s{s}" for m, lr in reproduce.BASELINE_LR.items() for s in (1, 2, 3)
    )


def test_default_order_is_valid_and_covers_every_task():
    jobs = reproduce.plan("out", reproduce.ORDER)
    tasks = {n.split("-")[1] for n, _ in jobs}
    assert tasks == set(reproduce.STEPS)
    for t in reproduce.STEPS:  # every task has LoRA vs AdaLoRA at both budgets and both baselines
        for cell in [
            f"{m}-r{b}-lr{reproduce.SHARED_LR}" for m in ("adalora", "lora") for b in (2, 8)
        ] + [f"{m}-lr{lr}" for m, lr in reproduce.BASELINE_LR.items()]:
            assert f"repro-{t}-{cell}-s3" in dict(jobs), (t, cell)


def test_lora_diagnostics_are_sweeps():
    """E: LoRA at scale 1 (alpha = r) and LoRA with 3x the steps, 3 seeds each; tagged as
    sweeps so the tables keep them out of Table 1."""
    e = dict(reproduce.plan("out", "E:stsb"))
    assert (
        list(e)[:3] == [f"repro-stsb-lora-r2-alpha2-lr1e-3-s{s}" for s in (1, 2, 3)] and len(e) == 6
    )
    cmd = e["repro-stsb-lora-r2-alpha2-lr1e-3-s2"]
    assert _flags(cmd, "--lora-alpha") == "2" and _flags(cmd, "--max-steps") == "200"
    assert json.loads(_flags(cmd, "--sweep-json")) == {"lora_alpha": 2}
    cmd = e["repro-stsb-lora-r2-T3x-lr1e-3-s3"]
    assert _flags(cmd, "--max-steps") == "600" and "--lora-alpha" not in cmd
    assert json.loads(_flags(cmd, "--sweep-json")) == {"max_steps": 600}


def test_bad_order_rejected():
    with pytest.raises(BadInput, match="unknown phase 'F'"):
        reproduce.plan("out", "F:sst2")


def test_dry_run_skips_finished_runs(tmp_path, capsys):
    (tmp_path / "repro-rte-adalora-r2-lr1e-3-s1.json").write_text(json.dumps({"status": "ok"}))
    assert (
        reproduce.main(
            ["--protocol", "short", "--output-dir", str(tmp_path), "--order", "A:rte", "--dry-run"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "12 runs in the grid, 1 done, 11 to run" in out
    assert "repro-rte-adalora-r2-lr1e-3-s1 " not in out + " "
    assert "--run-name repro-rte-lora-r2-lr1e-3-s1 " in out


def test_every_run_saves_checkpoints(tmp_path):
    """Every planned command passes --save-steps (short grid: about 10% of T; converged grid:
    SAVE_STEPS), so a killed grid run continues from its last checkpoint when the grid re-runs
    its command."""
    for name, cmd in reproduce.plan("out", reproduce.ORDER):
        steps = int(_flags(cmd, "--max-steps"))
        assert int(_flags(cmd, "--save-steps")) == max(1, steps // 10), name
    for j in plan_converged.plan(tmp_path):
        argv = reproduce.converged_run(j, tmp_path).argv
        assert argv[-2:] == ("--save-steps", str(reproduce.SAVE_STEPS))


def test_half_finished_run_resumes(tmp_path, monkeypatch, capsys):
    """A run killed half-way (checkpoints, no result file) is resumed by the grid, not restarted:
    its log says so, its result file appears and its checkpoints are gone."""
    import shutil
    import sys

    from experiments import glue
    from experiments.checkpoints import checkpoint_root
    from tests.helpers import save_tiny_model, write_glue_dir

    model = save_tiny_model(tmp_path / "tiny")
    data = write_glue_dir(tmp_path / "glue", tasks=["rte"], n_train=16, n_eval=8)
    out, name = tmp_path / "grid", "repro-half"
    flags = ["--task", "rte", "--model", str(model), "--data-dir", str(data), "--max-steps", "12"]
    flags += ["--batch-size", "4", "--max-length", "32", "--wandb", "disabled"]
    flags += ["--output-dir", str(out), "--run-name", name, "--save-steps", "4"]
    glue.main([*flags, "--keep-checkpoints"])  # then make it half-finished:
    (out / f"{name}.json").unlink()
    shutil.rmtree(checkpoint_root(out, name) / "checkpoint-12")
    job = (name, [sys.executable, "experiments/glue.py", *flags])
    monkeypatch.setattr(reproduce, "plan", lambda out, order: [job])
    argv = ["--protocol", "short", "--output-dir", str(out), "--workers", "1"]
    assert reproduce.main(argv) == 0
    log = (out / "logs" / f"{name}.log").read_text()
    assert "resuming from" in log and "checkpoint-8" in log, log[-2000:]
    assert json.loads((out / f"{name}.json").read_text())["run_name"] == name
    assert not checkpoint_root(out, name).exists()
    assert "1 runs in the grid, 0 done, 1 to run" in capsys.readouterr().out


def test_hours_passes_over_runs_that_would_not_finish(tmp_path, monkeypatch):
    """--hours: a run whose task / method / epochs took longer than the time left is not
    started; a later run that fits (or whose time is unknown) is."""
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
    # 18 of the 30 minutes gone: a run of unknown length (half the budget) no longer starts
    (root / "sweep" / "short.json").unlink()
    started.clear()
    clock = iter([0.0] + [18 * 60.0] * 100)
    monkeypatch.setattr(reproduce.time, "time", lambda: next(clock))
    assert reproduce.main(["--output-dir", str(root), "--hours", "0.5", "--workers", "1"]) == 0
    assert started == []
    monkeypatch.undo()
    monkeypatch.setattr(plan_converged, "plan", lambda r: jobs)
    monkeypatch.setattr(pool, "execute", fake_run)
    assert reproduce.main(["--output-dir", str(root), "--workers", "1"]) == 0  # no limit
    assert started == ["long", "short"]


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
    "hours-short": (
        ["--protocol", "short", "--hours", "1"],
        "--hours 1: only with --protocol converged; drop --hours, or use --protocol converged",
    ),
    "hours-slurm": (
        ["--launcher", "slurm", "--dry-run", "--hours", "1"],
        "--hours 1: only with --launcher local; "
        "with SLURM, --time limits each job and a cut run resumes",
    ),
    "order-converged": (
        ["--order", "A:sst2"],
        "--order A:sst2: only with --protocol short; add --protocol short, or drop --order",
    ),
    "order-phase": (
        ["--protocol", "short", "--order", "A:sst2,F:sst2"],
        "--order 'F:sst2': unknown phase 'F'; items are PHASE:task with PHASE one of A, B, C, D, E",
    ),
    "order-task": (
        ["--protocol", "short", "--order", "A:qqp"],
        "--order 'A:qqp': unknown task 'qqp'; use one of cola, sst2, stsb, rte",
    ),
    "order-no-task": (
        ["--protocol", "short", "--order", "A"],
        "--order 'A': unknown task ''; use one of cola, sst2, stsb, rte",
    ),
    "order-empty-item": (
        ["--protocol", "short", "--order", "A:sst2,"],
        "--order '': unknown phase ''; items are PHASE:task with PHASE one of A, B, C, D, E",
    ),
    "order-lr": (
        ["--protocol", "short", "--order", "B:sst2:3e-3"],
        "--order 'B:sst2:3e-3': LR '3e-3' is not in the sweep; use one of 2e-3, 1e-3, 5e-4, 2e-4",
    ),
    "order-budget": (
        ["--protocol", "short", "--order", "B:sst2:2e-3:4"],
        "--order 'B:sst2:2e-3:4': budget '4' is not in the grid; use one of 2, 8",
    ),
    "order-narrow-c": (
        ["--protocol", "short", "--order", "C:sst2:2e-3"],
        "--order 'C:sst2:2e-3': only a B item takes :lr[:budget]; "
        "write B:task:lr or B:task:lr:budget, or PHASE:task",
    ),
    "protocol": (
        ["--protocol", "long"],
        "argument --protocol: invalid choice: 'long' (choose from 'converged', 'short') "
        "(--help lists the flags)",
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
