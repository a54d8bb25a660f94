"""scripts/ablate.py (grid expansion, names, flags, resume, failures, every bad input as one
line before anything runs, the SLURM dry run) and the W&B sweep files under
experiments/sweeps/."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from experiments.config import GlueConfig, build_parser
from scripts import ablate
from scripts.grid import options, pool
from scripts.grid.command import check_glue_argv

ROOT = Path(__file__).resolve().parents[1]
GRID = ["tinit=100,200", "tfinal=300", "delta_t=1,10", "beta1=0.85", "orth_reg_weight=0.1,0.5"]


def test_expand_count_and_order(tmp_path):
    grid = ablate.parse_grid(GRID)
    assert list(grid) == sorted(grid)
    points = ablate.expand(grid)
    assert len(points) == 2 * 1 * 2 * 1 * 2
    assert points[0] == {
        "beta1": "0.85",
        "delta_t": "1",
        "orth_reg_weight": "0.1",
        "tfinal": "300",
        "tinit": "100",
    }
    assert len({json.dumps(p, sort_keys=True) for p in points}) == 8
    runs = ablate.plan(["rte"], ["adalora"], grid, [1, 2, 3], "results/ablations")
    assert len(runs) == 24 and len({r.name for r in runs}) == 24
    assert runs[0].result == Path("results/ablations") / f"{runs[0].name}.json"
    assert runs[0].log is None
    logged = ablate.plan(["rte"], ["adalora"], grid, [1], "out", logs=True)
    assert logged[0].log == Path("out") / "logs" / f"{logged[0].name}.log"


def test_run_name_deterministic():
    name = ablate.run_name("rte", "adalora", {"tinit": "100", "delta_t": "1"}, 1)
    assert name == "abl-rte-adalora-delta_t=1-tinit=100-s1"
    assert ablate.run_name("rte", "adalora", {"delta_t": "1", "tinit": "100"}, 1) == name
    # extra glue.py args change the name (a different configuration is not "done")
    other = ablate.run_name(
        "rte", "adalora", {"tinit": "100", "delta_t": "1"}, 1, ["--preset", "paper"]
    )
    assert other != name and other.endswith("-s1")
    assert (
        ablate.run_name(
            "rte", "adalora", {"tinit": "100", "delta_t": "1"}, 1, ["--preset", "paper"]
        )
        == other
    )


def test_command_flags():
    point = {
        "delta_t": "10",
        "orth_reg_weight": "0.5",
        "beta1": "0.85",
        "lr": "1e-3",
        "target_r": "4",
        "schedule": "linear",
    }
    cmd = ablate.build_command(
        "rte", "adalora", point, 2, "results/ablations", ["--preset", "quick"]
    )
    assert cmd[1] == "experiments/glue.py"
    args = cmd[2:]
    pairs = dict(zip(args[::2], args[1::2]))
    assert pairs["--task"] == "rte" and pairs["--method"] == "adalora" and pairs["--seed"] == "2"
    assert pairs["--delta-t"] == "10" and pairs["--orth-reg-weight"] == "0.5"
    assert pairs["--beta1"] == "0.85" and pairs["--lr"] == "1e-3"
    assert pairs["--target-r"] == "4" and pairs["--schedule"] == "linear"
    assert pairs["--output-dir"] == "results/ablations" and pairs["--preset"] == "quick"
    assert pairs["--run-name"] == ablate.run_name("rte", "adalora", point, 2, ["--preset", "quick"])
    assert json.loads(pairs["--sweep-json"]) == {
        "delta_t": 10,
        "orth_reg_weight": 0.5,
        "beta1": 0.85,
        "lr": 1e-3,
        "target_r": 4,
        "schedule": "linear",
    }
    assert all(a[2:].replace("-", "_") in ablate.GLUE_KEYS for a in args[::2])
    assert args[-4:] == ["--output-dir", "results/ablations", "--run-name", pairs["--run-name"]]


def test_schedules_shortcut():
    assert ablate.parse_grid([], ["cubic", "linear", "constant"]) == ablate.parse_grid(
        ["schedule=cubic,linear,constant"]
    )


# ablate.py's bad input: argv -> the one line on stderr (exit status 2, nothing written).
# "OUT" stands for the test's output folder. Grid values and extra arguments are checked by
# glue.py's own checks of every planned command (--dry-run too).
BAD = {
    "lr-text": (
        ["--task", "rte", "--grid", "lr=abc"],
        "--grid lr=abc: glue.py refuses it: argument --lr: invalid float value: 'abc'; "
        "see python experiments/glue.py --help",
    ),
    "lr-negative": (
        ["--task", "rte", "--grid", "lr=1e-3,-1"],
        "--grid lr=-1: glue.py refuses --lr -1: must be a learning rate > 0; "
        "pass a positive learning rate, e.g. --lr 1e-3",
    ),
    "max-steps-0": (
        ["--task", "rte", "--grid", "max_steps=0"],
        "--grid max_steps=0: glue.py refuses --max-steps 0: must be a positive integer; "
        "pass --max-steps 1 or more, or leave it out to train --epochs",
    ),
    "extra-collides-with-grid": (
        ["--task", "rte", "--grid", "lr=1e-3,2e-3", "--", "--lr", "5e-4"],
        "-- --lr 5e-4: --lr is also a grid key: every run would train at this value while its "
        "name and --sweep-json say the grid's; drop --lr after --, or the grid key lr",
    ),
    "extra-collides-abbreviated": (
        ["--task", "rte", "--grid", "tinit_frac=0.1", "--", "--tinit-f=0.2"],
        "-- --tinit-f=0.2: --tinit-frac is also a grid key: every run would train at this "
        "value while its name and --sweep-json say the grid's; drop --tinit-frac after --, or "
        "the grid key tinit_frac",
    ),
    "extra-sets-run-name": (
        ["--task", "rte", "--", "--run-name", "x"],
        "-- --run-name x: --run-name is set by ablate.py itself; drop --run-name",
    ),
    "extra-sets-seed": (
        ["--task", "rte", "--", "--seed", "3"],
        "-- --seed 3: --seed is set by ablate.py itself; use ablate.py's --seeds",
    ),
    "extra-unknown": (
        ["--task", "rte", "--", "--bogus", "1"],
        "-- --bogus 1: glue.py refuses them: unrecognized arguments: --bogus 1; "
        "see python experiments/glue.py --help",
    ),
    "extra-bad-value": (
        ["--task", "rte", "--", "--batch-size", "0"],
        "-- --batch-size 0: glue.py refuses --batch-size 0: must be a positive integer; "
        "pass --batch-size 1 or more",
    ),
    "unknown-key": (
        ["--task", "rte", "--grid", "tini=1"],
        "--grid tini=1: glue.py has no flag --tini; use one of its keys: "
        + ", ".join(sorted(k for k in ablate.GLUE_KEYS if k not in ablate.RESERVED)),
    ),
    "key-with-dashes": (
        ["--task", "rte", "--grid", "--delta-t=1"],
        None,  # argparse reads it as a flag: its own one-line error
    ),
    "reserved-key": (
        ["--task", "rte", "--grid", "seed=1,2"],
        "--grid seed=1,2: seed is set by ablate.py itself; use --seeds",
    ),
    "no-equals": (
        ["--task", "rte", "--grid", "delta_t"],
        "--grid delta_t: not KEY=V1,V2,...; write e.g. delta_t=1,10",
    ),
    "no-values": (
        ["--task", "rte", "--grid", "delta_t=,"],
        "--grid delta_t=,: no values; write e.g. delta_t=V1,V2",
    ),
    "key-twice": (
        ["--task", "rte", "--grid", "delta_t=1", "delta_t=10"],
        "--grid delta_t=10: key delta_t given twice; give each key once, with all its values",
    ),
    "repeated-value": (
        ["--task", "rte", "--grid", "delta_t=1,1"],
        "--grid delta_t=1,1: repeats a value; list each value once",
    ),
    "bad-schedule": (
        ["--task", "rte", "--schedules", "cubic", "square"],
        "--schedules square: glue.py refuses it: argument --schedule: invalid choice: 'square' "
        "(choose from 'cubic', 'linear', 'constant'); see python experiments/glue.py --help",
    ),
    "schedule-twice": (
        ["--task", "rte", "--schedules", "cubic", "--grid", "schedule=linear"],
        "--schedules cubic: schedule is also a --grid key; "
        "give it once: --schedules ... or --grid schedule=...",
    ),
    "bad-task": (
        ["--task", "nope"],
        "--task nope: glue.py refuses it: argument --task: invalid choice: 'nope' (choose from "
        "'sst2', 'cola', 'mrpc', 'qqp', 'stsb', 'mnli', 'qnli', 'rte'); "
        "see python experiments/glue.py --help",
    ),
    "bad-seed": (
        ["--task", "rte", "--seeds", "-1"],
        "--seeds -1: glue.py refuses --seed -1: must be in [0, 2^32); pass --seed 0 or more",
    ),
    "repeated-seed": (
        ["--task", "rte", "--seeds", "1", "1"],
        "--seeds 1 1: repeats a value; list each value once",
    ),
    "workers-0": (
        ["--task", "rte", "--workers", "0"],
        "--workers 0: must be a positive integer; pass --workers 1 or more",
    ),
    "slurm-flag-locally": (
        ["--task", "rte", "--partition", "gpu"],
        "--partition gpu: only with --launcher slurm (or slurm-local); "
        "add --launcher slurm, or drop --partition",
    ),
    "workers-on-slurm": (
        ["--task", "rte", "--launcher", "slurm", "--workers", "2"],
        "--workers 2: only with --launcher local; "
        "with SLURM, --array-parallelism sets the jobs at once",
    ),
    "slurm-time-0": (
        ["--task", "rte", "--launcher", "slurm", "--time", "0"],
        "--time 0: must be a positive integer; pass --time 1 or more",
    ),
    "slurm-option-own": (
        ["--task", "rte", "--launcher", "slurm", "--slurm-option", "partition=gpu"],
        "--slurm-option partition=gpu: partition is set by the launcher; use --partition",
    ),
    "slurm-option-form": (
        ["--task", "rte", "--launcher", "slurm", "--slurm-option", "account"],
        "--slurm-option account: not KEY=VALUE (an sbatch option); "
        "pass e.g. --slurm-option account=lab",
    ),
    "runs-per-gpu-cpu-jobs": (
        ["--task", "rte", "--launcher", "slurm", "--gpus-per-job", "0", "--runs-per-gpu", "2"],
        "--runs-per-gpu 2: needs GPUs, and --gpus-per-job is 0; "
        "drop --runs-per-gpu, or pass --gpus-per-job 1 or more",
    ),
}


@pytest.mark.parametrize("case", BAD)
@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "run"])
def test_bad_input_is_one_line(case, dry, tmp_path, monkeypatch, capsys):
    argv, line = BAD[case]
    out = tmp_path / "abl"
    fake = FakeRunner()
    monkeypatch.setattr(pool, "execute", fake)
    i = argv.index("--") if "--" in argv else len(argv)
    argv = [*argv[:i], "--output-dir", str(out), *(["--dry-run"] if dry else []), *argv[i:]]
    with pytest.raises(SystemExit) as e:
        ablate.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ablate.py: error: "), err
    if line is not None:
        assert err == f"ablate.py: error: {line}\n"
    assert fake.calls == [] and not out.exists()


def test_bf16_ablation_on_a_cpu_without_native_bf16_stops_before_any_run(
    tmp_path, monkeypatch, capsys
):
    """-- --precision bf16 where bf16 would be emulated: one line before any run (the dry run
    still lists them); with native bf16 they run."""
    from experiments import trainer

    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr(trainer, "cpu_has_native_bf16", lambda: False)
    fake = FakeRunner()
    monkeypatch.setattr(pool, "execute", fake)
    out = tmp_path / "abl"
    argv = ["--task", "rte", "--grid", "tinit=100,200", "--output-dir", str(out)]
    with pytest.raises(SystemExit) as e:
        ablate.main([*argv, "--", "--precision", "bf16"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert err.startswith("ablate.py: error: --precision bf16 (planned run ")
    assert "this CPU has no native bf16" in err and "--launcher slurm" in err
    assert fake.calls == [] and not out.exists()
    assert ablate.main([*argv, "--dry-run", "--", "--precision", "bf16"]) == 0
    monkeypatch.setattr(trainer, "cpu_has_native_bf16", lambda: True)
    assert ablate.main([*argv, "--", "--precision", "bf16"]) == 0 and len(fake.calls) == 2


def test_slurm_without_slurm_is_refused(tmp_path, monkeypatch, capsys):
    pytest.importorskip("submitit")
    monkeypatch.setattr(options.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit) as e:
        ablate.main(["--task", "rte", "--launcher", "slurm", "--output-dir", str(tmp_path / "o")])
    assert e.value.code == 2
    assert capsys.readouterr().err == (
        "ablate.py: error: --launcher slurm: no SLURM here (no srun on PATH); "
        "run it on the cluster's login node, or add --dry-run to see the jobs\n"
    )


def test_bad_input_subprocess(tmp_path):
    """The script itself: one line on stderr, exit status 2, nothing written."""
    out = tmp_path / "abl"
    r = subprocess.run(
        [sys.executable, "scripts/ablate.py", "--task", "rte", "--grid", "lr=1e-3,2e-3",
         "--output-dir", str(out), "--", "--lr", "5e-4"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("ablate.py: error: -- --lr 5e-4: --lr is also a grid key")
    assert r.stderr.count("\n") == 1 and not out.exists()


class FakeRunner:
    """Stands in for scripts/grid/pool.execute: records commands, writes the result file
    glue.py would (or fails the runs named in ``fail``)."""

    def __init__(self, fail=()):
        self.calls = []
        self.fail = set(fail)

    def __call__(self, run, env, python=None, timeout_s=None):
        self.calls.append(list(run.argv))
        if run.name in self.fail:
            return pool.Outcome(run.name, 1, 0.0, "exit status 1")
        path = ROOT / run.result
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
        return pool.Outcome(run.name, 0, 0.0)


def test_resume_skips_existing(tmp_path, monkeypatch, capsys):
    fake = FakeRunner()
    monkeypatch.setattr(pool, "execute", fake)
    out = tmp_path / "abl"
    out.mkdir()
    done = ablate.run_name("rte", "adalora", {"tinit": "100", "delta_t": "1"}, 1)
    (out / f"{done}.json").write_text("{}")
    argv = ["--task", "rte", "--grid", "tinit=100,200", "delta_t=1", "--seeds", "1", "2",
            "--output-dir", str(out)]  # fmt: skip
    assert ablate.main(argv) == 0
    names = [c[c.index("--run-name") + 1] for c in fake.calls]
    assert len(names) == 3 and done not in names
    text = capsys.readouterr().out
    assert f"{done}: skip" in text and "4 runs: 3 ran, 1 skipped, 0 failed" in text
    # second invocation: everything exists -> nothing runs
    fake.calls.clear()
    assert ablate.main(argv) == 0
    assert fake.calls == []


def test_failures_reported(tmp_path, monkeypatch, capsys):
    bad = ablate.run_name("rte", "adalora", {"tinit": "200"}, 1)
    fake = FakeRunner(fail={bad})
    monkeypatch.setattr(pool, "execute", fake)
    rc = ablate.main(
        ["--task", "rte", "--grid", "tinit=100,200", "--output-dir", str(tmp_path / "abl")]
    )
    assert rc == 1 and len(fake.calls) == 2  # the failure does not stop the grid
    err = capsys.readouterr().err
    assert "FAILED" in err and bad in err and "exit status 1" in err


def test_workers_run_at_once_with_logs(tmp_path, monkeypatch):
    fake = FakeRunner()
    monkeypatch.setattr(pool, "execute", fake)
    out = tmp_path / "abl"
    argv = ["--task", "rte", "--grid", "tinit=100,200", "--workers", "2", "--output-dir", str(out)]
    assert ablate.main(argv) == 0 and len(fake.calls) == 2


def test_dry_run_runs_nothing(tmp_path, monkeypatch, capsys):
    fake = FakeRunner()
    monkeypatch.setattr(pool, "execute", fake)
    assert (
        ablate.main(
            [
                "--task",
                "rte",
                "cola",
                "--schedules",
                "cubic",
                "linear",
                "--dry-run",
                "--output-dir",
                str(tmp_path),
                "--",
                "--preset",
                "quick",
            ]
        )
        == 0
    )
    assert fake.calls == []
    out = capsys.readouterr().out
    assert out.count("experiments/glue.py") == 4 and "--schedule linear" in out
    assert "4 runs: 0 ran, 0 skipped, 0 failed (dry run)" in out


def test_slurm_dry_run_prints_the_job_array(tmp_path, capsys):
    pytest.importorskip("submitit")
    argv = ["--task", "rte", "--grid", "lr=1e-3,2e-3,5e-4", "--seeds", "1", "2", "--launcher",
            "slurm", "--runs-per-gpu", "4", "--partition", "gpu", "--time", "60", "--dry-run",
            "--output-dir", str(tmp_path / "abl")]  # fmt: skip
    assert ablate.main(argv) == 0
    out = capsys.readouterr().out
    assert "#SBATCH --array=0-1%2" in out and "#SBATCH --partition=gpu" in out
    assert "# array task 0: 4 run(s) at once" in out and "# array task 1: 2 run(s) at once" in out
    assert out.count("#   experiments/glue.py") == 6
    assert not (tmp_path / "abl").exists()


def test_glue_keys_are_the_glue_parsers():
    assert set(ablate.GLUE_KEYS) == set(vars(build_parser(GlueConfig, "").parse_args([])))
    assert {"delta_t", "tinit", "schedule", "variant", "precision"} <= set(ablate.GLUE_KEYS)


SWEEPS = sorted((ROOT / "experiments" / "sweeps").glob("*.yaml"))


def test_sweep_files_exist():
    assert {p.name for p in SWEEPS} >= {
        "lr_quick.yaml",
        "schedule_rte.yaml",
        "schedule_shapes.yaml",
    }


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_sweep_yaml(path, tmp_path):
    cfg = yaml.safe_load(path.read_text())
    assert cfg["program"] == "experiments/glue.py"
    assert cfg["metric"] == {"name": "eval/main", "goal": "maximize"}
    assert cfg["method"] in ("grid", "bayes", "random")
    assert cfg["command"] == ["${env}", "python", "${program}", "--wandb", "online", "${args}"]
    for name, spec in cfg["parameters"].items():
        assert name.replace("-", "_") in ablate.GLUE_KEYS, f"{path.name}: {name} is no flag"
        assert "value" in spec or "values" in spec
        for v in spec.get("values", [spec.get("value")]):  # glue.py's own checks accept each
            check_glue_argv(["--" + name, str(v), "--output-dir", str(tmp_path)])
