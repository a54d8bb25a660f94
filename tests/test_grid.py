"""scripts/grid/: the one glue.py command builder and glue.py's own check of a command, the
local pool (slots, GPU packing, the re-planning loop) and the SLURM launcher, run for real
through submitit's local executor: its result files equal the local pool's, re-planning works
as results land, and a preempted job resumes its runs from their checkpoints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments import glue
from scripts import plan_converged, reproduce
from scripts.grid import command, pool
from scripts.grid.command import GlueRefused, check_glue_argv, given_keys, glue_argv
from scripts.grid.pool import Outcome, Run, drive

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ the command builder
def test_glue_argv_order():
    argv = glue_argv(
        ["--task", "rte", "--lr", 1e-3], output_dir="out/x", run_name="n", save_steps=5
    )
    assert argv == ["--task", "rte", "--lr", "0.001", "--output-dir", "out/x", "--run-name", "n",
                    "--save-steps", "5"]  # fmt: skip
    assert glue_argv([], output_dir="o", run_name="n") == ["--output-dir", "o", "--run-name", "n"]
    cmd = command.glue_command(["--task", "rte"], "py")
    assert cmd == ["py", "experiments/glue.py", "--task", "rte"]


def test_converged_runs_are_the_planners_commands(tmp_path):
    """reproduce.py runs exactly Job.command(...) plus --save-steps for every planned job (the
    converged grid's result files record this command)."""
    jobs = plan_converged.plan(tmp_path)
    assert jobs
    for j in jobs:
        run = reproduce.converged_run(j, tmp_path)
        want = j.command("python", tmp_path)[2:] + ["--save-steps", str(reproduce.SAVE_STEPS)]
        assert list(run.argv) == want, j.name
        assert run.result == tmp_path / j.stage / f"{j.name}.json"


def test_sweep_json_and_values():
    assert command.sweep_json({"tinit": "100", "lr": "1e-3", "schedule": "cubic"}) == (
        '{"lr":0.001,"schedule":"cubic","tinit":100}'
    )
    assert command.parse_value("0.1") == 0.1 and command.parse_value("x1") == "x1"


def test_given_keys_reads_every_spelling():
    assert given_keys(["--lr", "1e-3"]) == ["lr"]
    assert given_keys(["--lr=1e-3", "--tinit-f", "0.1", "--resume"]) == sorted(
        ["lr", "tinit_frac", "resume"], key=command.glue_dests().index
    )
    assert given_keys(["--seed", "42"]) == ["seed"]  # glue.py's default value, still given
    with pytest.raises(GlueRefused, match="ambiguous option"):
        given_keys(["--l", "1"])
    assert "lr" in command.glue_dests() and "help" not in command.glue_dests()


# argv -> glue.py's own line. check_glue_argv must refuse each with exactly the line glue.py
# itself prints (minus the "glue.py: error: " prefix).
REFUSED = {
    "lr-text": ["--lr", "abc"],
    "lr-negative": ["--lr", "-1"],
    "max-steps-0": ["--max-steps", "0"],
    "bad-task": ["--task", "nope"],
    "target-r-0": ["--method", "full", "--target-r", "0"],
    "unknown-flag": ["--bogus", "1"],
    "fractions": ["--tinit-frac", "0.6", "--tfinal-frac", "0.5"],
}


@pytest.mark.parametrize("name", REFUSED)
def test_check_agrees_with_glue(name, tmp_path, capsys):
    argv = [*REFUSED[name], "--output-dir", str(tmp_path / "out"), "--dry-run"]
    with pytest.raises(SystemExit) as e:
        glue.main(argv)
    assert e.value.code == 2
    line = capsys.readouterr().err.strip()
    with pytest.raises(GlueRefused) as refused:
        check_glue_argv(argv)
    want = line.removeprefix("glue.py: error: ").removesuffix(" (--help lists the flags)")
    r = refused.value
    assert (r.problem if r.value is None else r.line()) == want  # parser error: argparse's text
    assert not (tmp_path / "out").exists()


def test_check_accepts_a_good_command(tmp_path):
    check_glue_argv(["--task", "rte", "--lr", "1e-3", "--output-dir", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()  # nothing written


# ------------------------------------------------------------------ slots and the loop
def test_slots_pin_gpus_and_threads():
    slots = pool.gpu_slots(["0", "1"], 3, threads=2)
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0", "1"] * 3
    assert all(s.env["OMP_NUM_THREADS"] == "2" for s in slots)
    cpu = pool.cpu_slots(2)
    assert len(cpu) == 2 and "CUDA_VISIBLE_DEVICES" not in cpu[0].env
    assert cpu[0].env["OMP_NUM_THREADS"] == "1"


def test_visible_gpus_reads_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert pool.visible_gpus() == ["3", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert pool.visible_gpus() == []


class FakeLauncher:
    """Runs "finish" in start order, one per wait(); a run writes its result unless it is in
    ``fail`` (exit 1) or ``silent`` (exit 0, no result)."""

    def __init__(self, capacity, fail=(), silent=()):
        self.capacity, self.fail, self.silent = capacity, set(fail), set(silent)
        self.live, self.started, self.closed = [], [], False

    def running(self):
        return {r.name for r in self.live}

    def start(self, runs):
        assert len(self.live) + len(runs) <= self.capacity
        self.live += runs
        self.started.append([r.name for r in runs])

    def wait(self):
        r = self.live.pop(0)
        if r.name in self.fail:
            return [Outcome(r.name, 1, 0.0, "exit status 1")]
        if r.name not in self.silent:
            r.result.write_text("{}")
        return [Outcome(r.name, 0, 0.0, "" if r.name not in self.silent else "no result")]

    def close(self):
        self.closed = True


def _run(tmp_path, name):
    return Run(name, ("--run-name", name), tmp_path / f"{name}.json")


def test_drive_replans_as_results_land(tmp_path):
    """A seed run appears once its sweep run landed; slots are never over-filled; a failed run
    is not started again; a run that exits 0 without its result file is failed."""
    (tmp_path / "done.json").write_text("{}")

    def plan():
        runs = [_run(tmp_path, n) for n in ("done", "sweep-a", "sweep-b", "bad", "silent")]
        if (tmp_path / "sweep-a.json").exists():
            runs.append(_run(tmp_path, "seed-a"))
        return runs

    fake = FakeLauncher(2, fail={"bad"}, silent={"silent"})
    outcomes = drive(plan, fake)
    assert fake.started == [["sweep-a", "sweep-b"], ["bad"], ["silent"], ["seed-a"]]
    assert {o.name for o in outcomes if not o.ok} == {"bad", "silent"}
    assert (tmp_path / "seed-a.json").exists() and fake.closed


def test_local_pool_runs_processes_in_their_slots(tmp_path, monkeypatch):
    """LocalPool gives each run its slot's environment; at most one run per slot."""
    seen = []

    def fake_execute(run, env, python=None, timeout_s=None):
        seen.append((run.name, env["CUDA_VISIBLE_DEVICES"]))
        run.result.write_text("{}")
        return Outcome(run.name, 0, 0.0)

    monkeypatch.setattr(pool, "execute", fake_execute)
    runs = [_run(tmp_path, f"r{i}") for i in range(5)]
    p = pool.LocalPool(pool.gpu_slots(["7"], 2), base_env={})
    outcomes = drive(lambda: runs, p)
    assert sorted(o.name for o in outcomes) == [f"r{i}" for i in range(5)]
    assert {gpu for _, gpu in seen} == {"7"}


def test_execute_reports_exit_status_and_timeout(tmp_path, monkeypatch):
    monkeypatch.setattr(pool, "glue_command", lambda argv, python=None: list(argv))
    run = Run("x", (sys.executable, "-c", "import sys; sys.exit(3)"), tmp_path / "x.json",
              tmp_path / "x.log")  # fmt: skip
    o = pool.execute(run, {})
    assert o.rc == 3 and o.why == "exit status 3" and (tmp_path / "x.log").exists()
    slow = Run("y", (sys.executable, "-c", "import time; time.sleep(30)"), tmp_path / "y.json")
    o = pool.execute(slow, {}, timeout_s=0.5)
    assert o.rc is None and o.why.startswith("killed after") and not pool.LIVE


# ------------------------------------------------------------------ SLURM through submitit
def test_pack_job_checkpoint_stops_runs_and_requeues_itself():
    submitit = pytest.importorskip("submitit")
    from scripts.grid.options import SlurmOptions
    from scripts.grid.slurm import PackJob

    job = PackJob([Run("a", ("--x",), Path("a.json"))], SlurmOptions(gpus_per_job=0))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    pool.LIVE.add(child)
    try:
        again = job.checkpoint()
        assert child.poll() is not None  # stopped before the job is requeued
        assert isinstance(again, submitit.helpers.DelayedSubmission)
        assert again.function is job and again.args == () and again.kwargs == {}
    finally:
        pool.LIVE.discard(child)
        child.kill()
        child.wait()


def test_sbatch_preview_is_submitits_job_array():
    pytest.importorskip("submitit")
    from scripts.grid.options import SlurmOptions
    from scripts.grid.slurm import sbatch_params, sbatch_preview

    opts = SlurmOptions(time_min=90, gpus_per_job=1, runs_per_gpu=3, partition="gpu",
                        array_parallelism=4, setup=("module load cuda",),
                        sbatch=(("account", "lab"),))  # fmt: skip
    runs = [Run(f"r{i}", ("--run-name", f"r{i}"), Path(f"r{i}.json")) for i in range(7)]
    text = sbatch_preview(Path("/grid/logs/submitit/%j"), opts, runs, "/venv/python")
    assert "#SBATCH --array=0-2%3" in text  # 7 runs, 3 per job: 3 jobs, at most 3 at once
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=90", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --cpus-per-task=6", "#SBATCH --account=lab", "module load cuda",
                 "#SBATCH --signal=USR2@120"):  # fmt: skip
        assert line in text, line
    assert "/venv/python -u -m submitit.core._submit /grid/logs/submitit/%j" in text
    assert text.count("#   experiments/glue.py --run-name") == 7
    assert "# array task 2: 1 run(s) at once" in text
    assert sbatch_params(opts)["array_parallelism"] == 4


TIMING = ("runtime", "per_second", "wall_time", "created")


def comparable(path: Path, root: Path) -> dict:
    """A result record without what differs between two equal runs in two folders: timings,
    the creation time, the output folder in the recorded command."""

    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if not any(t in k for t in TIMING)}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    return strip(json.loads(path.read_text().replace(str(root), "ROOT")))


def _tiny_planner(model: Path, data: Path):
    """A converged-style planner: a sweep run, then a seed run once the sweep run landed."""
    flags = ["--task", "rte", "--model", str(model), "--data-dir", str(data), "--max-steps",
             "4", "--batch-size", "4", "--max-length", "32", "--evals", "2", "--wandb",
             "disabled"]  # fmt: skip
    Job = plan_converged.Job

    def plan(root):
        jobs = [Job("sweep", "tiny-sweep", (*flags, "--seed", "1"), 0)]
        if (Path(root) / "sweep" / "tiny-sweep.json").exists():
            jobs.append(Job("seeds", "tiny-seed2", (*flags, "--seed", "2"), 1))
        return jobs

    return plan


@pytest.mark.slow
def test_slurm_local_results_equal_the_local_pools(tmp_path, monkeypatch, capsys, bert_dir,
                                                   glue_dir):  # fmt: skip
    """The converged grid's command through submitit's local executor (real subprocesses, the
    pickled job, a re-plan after the first result) writes the same result files as the local
    pool, except for timings."""
    pytest.importorskip("submitit")
    monkeypatch.setattr(plan_converged, "plan", _tiny_planner(bert_dir, glue_dir))
    local, slurm = tmp_path / "local", tmp_path / "slurm"
    assert reproduce.main(["--output-dir", str(local), "--workers", "1"]) == 0
    argv = ["--output-dir", str(slurm), "--launcher", "slurm-local", "--gpus-per-job", "0",
            "--cpus-per-job", "1", "--time", "10"]  # fmt: skip
    assert reproduce.main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("submitted 1 runs in 1 jobs") == 2  # the seed run: a second array
    for rel in ("sweep/tiny-sweep.json", "seeds/tiny-seed2.json"):
        a, b = comparable(local / rel, local), comparable(slurm / rel, slurm)
        assert a["status"] == "ok" and a["metrics"] and a == b, rel
    assert list((slurm / "logs" / "submitit").iterdir())  # submitit's own job folders
    assert "ok   tiny-seed2" in out


def _worker_pid(folder: Path) -> int:
    """The job's submitit worker (python -m submitit.core._submit <folder>/...), from /proc."""

    def cmdline(pid: str) -> bytes:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return b""

    (pid,) = [p for p in os.listdir("/proc") if p.isdigit() and b"submitit.core._submit"
              in cmdline(p) and str(folder).encode() in cmdline(p)]  # fmt: skip
    return int(pid)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the job's process in /proc")
def test_preempted_job_resumes_its_run(tmp_path, bert_dir, glue_dir):
    """A job preempted mid-run (the signal SLURM sends, USR2, to submitit's worker) stops its
    run, is requeued, and the run continues from its latest checkpoint."""
    pytest.importorskip("submitit")
    from experiments.checkpoints import checkpoint_root, latest_checkpoint
    from scripts.grid.options import SlurmOptions
    from scripts.grid.slurm import SubmititPool

    out = tmp_path / "grid"
    flags = ["--task", "rte", "--model", str(bert_dir), "--data-dir", str(glue_dir),
             "--max-steps", "400", "--batch-size", "4", "--max-length", "32", "--evals", "1",
             "--wandb", "disabled"]  # fmt: skip
    argv = glue_argv(flags, output_dir=out, run_name="long", save_steps=2)
    run = Run("long", tuple(argv), out / "long.json", out / "logs" / "long.log")
    launcher = SubmititPool(tmp_path / "submitit" / "%j", SlurmOptions(gpus_per_job=0,
                            cpus_per_job=1, time_min=60), cluster="local", poll_s=0.2)  # fmt: skip
    launcher.start([run])
    (job,) = launcher.jobs
    ckpt = checkpoint_root(out, "long")
    deadline = time.time() + 240
    while latest_checkpoint(ckpt) is None and time.time() < deadline and not job.done():
        time.sleep(0.1)  # a complete checkpoint: one cut while it is written is not resumed
    assert not job.done(), "the run ended before it could be preempted"
    os.kill(_worker_pid(tmp_path), signal.SIGUSR2)  # what SLURM sends before preempting
    (outcome,) = launcher.wait()
    assert outcome.ok, outcome
    log = run.log.read_text()
    assert "resuming from" in log, log[-3000:]
    assert json.loads(run.result.read_text())["run_name"] == "long"
