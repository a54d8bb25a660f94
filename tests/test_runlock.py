"""experiments/runlock.py: one process per run and per grid. A second holder of a lock is
refused with one line naming the first (in this process and from another one); a lock left by a
killed process is no lock; glue.py refuses a run another process is training before it touches
its checkpoints, and reproduce.py refuses a second driver of the same grid before any run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import glue, runlock
from experiments.validation.base import BadInput
from scripts import plan_converged, reproduce
from scripts.grid import pool
from scripts.grid.pool import Outcome
from tests.helpers import save_tiny_model, write_glue_dir

ROOT = Path(__file__).resolve().parents[1]
HOLD = """
import sys, time
from experiments import runlock
with runlock.hold(sys.argv[1], "--flag", "v", "fix"):
    print("held", flush=True)
    time.sleep(600)
"""


def _hold(path):
    return runlock.hold(path, "--run-name", "r", "wait for it")


def test_second_holder_is_refused_and_the_lock_is_freed_on_exit(tmp_path):
    path = tmp_path / "out" / ".r.lock"
    with _hold(path):
        assert f"pid {os.getpid()} on " in path.read_text()
        with pytest.raises(BadInput) as e, _hold(path):
            pass
        assert e.value.line().startswith(f"--run-name r: another process holds {path} now (pid ")
        assert e.value.line().endswith("; wait for it")
        assert path.exists()  # the refused one removed nothing
    assert not path.exists()
    with _hold(path):  # free again
        pass


def test_lock_of_a_killed_process_is_no_lock(tmp_path):
    path = tmp_path / ".r.lock"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE,
                         env=env, text=True)  # fmt: skip
    try:
        assert p.stdout.readline() == "held\n"
        with pytest.raises(BadInput, match=rf"holds .* now \(pid {p.pid} on "), _hold(path):
            pass
        p.send_signal(signal.SIGKILL)  # no clean-up: the file stays, the kernel drops the lock
        p.wait()
        assert path.exists()
        with _hold(path):
            assert f"pid {os.getpid()} " in path.read_text()
    finally:
        p.kill()
        p.wait()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("runlock")
    return save_tiny_model(root / "tiny-bert"), write_glue_dir(root / "glue", tasks=["rte"])


def test_glue_refuses_a_run_another_process_trains(tiny, tmp_path, capsys):
    model, data = tiny
    out = tmp_path / "out"
    ck = out / "checkpoints" / "busy" / "checkpoint-4"
    ck.mkdir(parents=True)  # the other process's checkpoint, half-written: it must stay
    argv = ["--task", "rte", "--model", str(model), "--data-dir", str(data), "--output-dir",
            str(out), "--run-name", "busy", "--max-steps", "4", "--batch-size", "4",
            "--max-length", "32", "--save-steps", "2", "--wandb", "disabled"]  # fmt: skip
    with _hold(runlock.run_lock_path(out, "busy")), pytest.raises(SystemExit) as e:
        glue.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert err.startswith(
        f"glue.py: error: --run-name busy: another process holds {out}/.busy.lock"
    )
    assert err.rstrip().endswith("or pick another --run-name")
    assert ck.is_dir() and not (out / "busy.json").exists()
    # free: the same command trains and writes its result; the lock file is gone after
    assert glue.main(argv)["run_name"] == "busy"
    assert (out / "busy.json").exists() and not runlock.run_lock_path(out, "busy").exists()


def test_reproduce_refuses_a_second_driver(tmp_path, monkeypatch, capsys):
    root = tmp_path / "grid"
    jobs = [plan_converged.Job("sweep", "a", ("--task", "rte", "--seed", "1"), 0)]
    monkeypatch.setattr(plan_converged, "plan", lambda r: jobs)
    started = []

    def fake_run(run, env, python=None, timeout_s=None):
        started.append(run.name)
        run.result.parent.mkdir(parents=True, exist_ok=True)
        run.result.write_text(json.dumps({}))
        return Outcome(run.name, 0, 0.0)

    monkeypatch.setattr(pool, "execute", fake_run)
    with _hold(root / reproduce.LOCK_FILE), pytest.raises(SystemExit) as e:
        reproduce.main(["--output-dir", str(root), "--workers", "1"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"reproduce.py: error: --output-dir {root}: another process holds")
    assert reproduce.LOCK_FIX in err and started == []
    assert reproduce.main(["--output-dir", str(root), "--workers", "1"]) == 0
    assert started == ["a"] and not (root / reproduce.LOCK_FILE).exists()
