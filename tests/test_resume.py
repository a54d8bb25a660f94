"""Kill and resume (--save-steps, --resume, experiments/checkpoints.py): a glue.py run killed
with SIGKILL once a checkpoint exists, then re-run with the same command, ends exactly where an
uninterrupted run with the same seed ends: the same losses at every logging step, budgets at
every step, evaluations, rank masks, allocator state and adapters; one result file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from experiments import checkpoints, glue
from experiments.checkpoints import checkpoint_root, latest_checkpoint
from tests.helpers import save_tiny_model, write_glue_dir

ROOT = Path(__file__).resolve().parents[1]
TIMING = ("runtime", "samples_per_second", "steps_per_second")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    model = save_tiny_model(root / "tiny-bert")  # hidden dropout 0.1: the RNG state matters
    data = write_glue_dir(root / "glue", tasks=["rte"], n_train=64, n_eval=16)
    return model, data


def argv(model, data, out, name, steps=200, *extra):
    return [
        "--task", "rte",
        "--model", str(model),
        "--data-dir", str(data),
        "--output-dir", str(out),
        "--run-name", name,
        "--seed", "3",
        "--max-steps", str(steps),
        "--batch-size", "4",
        "--max-length", "32",
        "--evals", "4",
        "--tinit", str(steps // 10),
        "--tfinal", str(steps // 4),
        "--delta-t", "2",
        "--target-r", "2",
        "--lora-dropout", "0",
        "--cls-dropout", "0",
        "--wandb", "disabled",
        *extra,
    ]  # fmt: skip


def _strip(evals):
    return [{k: v for k, v in e.items() if k not in TIMING} for e in evals]


def _final_state(out: Path, name: str, steps: int) -> dict:
    return load_file(checkpoint_root(out, name) / f"checkpoint-{steps}" / "model.safetensors")


def test_kill_and_resume_matches_an_uninterrupted_run(setup, tmp_path, capsys):
    model, data = setup
    steps, name = 200, "killed"
    # the same command for all three runs; --keep-checkpoints to compare the final states
    flags = ("--save-steps", "5", "--keep-checkpoints")
    ref = glue.main(argv(model, data, tmp_path / "ref", name, steps, *flags))

    out = tmp_path / "run"
    cmd = [sys.executable, "experiments/glue.py", *argv(model, data, out, name, steps, *flags)]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), "WANDB_MODE": "disabled"}
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 600
        while latest_checkpoint(checkpoint_root(out, name)) is None:
            assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.time() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = int(latest_checkpoint(checkpoint_root(out, name)).name.split("-")[1])
    assert 0 < killed_at < steps and not (out / f"{name}.json").exists()

    capsys.readouterr()
    rec = glue.main(argv(model, data, out, name, steps, *flags))  # same command: resumes
    assert "resuming from" in capsys.readouterr().out
    assert rec["hyperparameters"] == ref["hyperparameters"]
    # losses at every logging step (before and after the kill), budgets at every step
    assert [r["step"] for r in rec["train_log"]] == [r["step"] for r in ref["train_log"]]
    for a, b in zip(rec["train_log"], ref["train_log"]):
        assert a["learning_rate"] == b["learning_rate"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6, abs=1e-9), a
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-5, abs=1e-9), a
    assert rec["budget"] == ref["budget"] and len(rec["budget"]["curve"]) == steps
    assert rec["rank_pattern"] == ref["rank_pattern"]
    got, want = _strip(rec["metrics"]["evals"]), _strip(ref["metrics"]["evals"])
    assert [e["step"] for e in got] == [e["step"] for e in want] == [50, 100, 150, 200]
    for a, b in zip(got, want):
        assert a.pop("split") == b.pop("split") and a == pytest.approx(b, rel=1e-6, abs=1e-9)
    # rank masks, the allocator's scores and the adapters at T
    s_rec, s_ref = _final_state(out, name, steps), _final_state(tmp_path / "ref", name, steps)
    assert set(s_rec) == set(s_ref) and "rankallocator.mask" in s_rec
    assert torch.equal(s_rec["rankallocator.mask"], s_ref["rankallocator.mask"])
    assert int(s_rec["rankallocator.step"]) == steps - 1
    for k in s_ref:
        torch.testing.assert_close(s_rec[k], s_ref[k], rtol=1e-5, atol=1e-7, msg=k)
    # the result file exactly once; a further re-run is refused
    assert sorted(p.name for p in out.glob("*.json")) == [f"{name}.json"]
    assert json.loads((out / f"{name}.json").read_text())["run_name"] == name
    with pytest.raises(SystemExit) as e:
        glue.main(argv(model, data, out, name, steps, *flags))
    assert e.value.code == 2 and "already exists" in capsys.readouterr().err


def test_checkpoints_hold_the_training_state_and_go_after_the_result(setup, tmp_path):
    """The allocator's buffers are in the AdaLoraModel's state dict (so in every checkpoint),
    the frozen base weights are not; the callbacks' state is in trainer_state.json; the
    checkpoints are deleted once the result file is written (kept with --keep-checkpoints)."""
    model, data = setup
    rec = glue.main(
        argv(model, data, tmp_path, "kept", 12, "--save-steps", "4", "--keep-checkpoints")
    )
    root = checkpoint_root(tmp_path, "kept")
    assert sorted(p.name for p in root.iterdir()) == ["checkpoint-12", "checkpoint-8", "run.json"]
    last = root / "checkpoint-12"
    for f in ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth"):
        assert (last / f).is_file(), f
    sd = load_file(last / "model.safetensors")
    assert {"rankallocator.mask", "rankallocator.step", "rankallocator.ipt_E"} <= set(sd)
    assert any(k.endswith("lora_E") for k in sd) and any("classifier" in k for k in sd)
    assert not any(k.endswith("query.base_layer.weight") for k in sd)  # frozen: from --model
    state = json.loads((last / "trainer_state.json").read_text())["stateful_callbacks"]
    assert state["EvalRecorder"]["attributes"]["rows"] == json.loads(
        json.dumps(rec["metrics"]["evals"])
    )
    curve = [[h["step"], h["budget"]] for h in state["AdaLoraCallback"]["attributes"]["history"]]
    assert curve == rec["budget"]["curve"]
    assert state["DivergenceGuard"]["attributes"] == {"diverged": False}

    glue.main(argv(model, data, tmp_path, "gone", 12, "--save-steps", "4"))
    assert (tmp_path / "gone.json").is_file() and not checkpoint_root(tmp_path, "gone").exists()
    assert checkpoint_root(tmp_path, "kept").exists()  # another run's are left alone


def test_resume_from_the_last_complete_checkpoint(tmp_path):
    root = tmp_path / "checkpoints" / "r"
    for step, complete in ((4, True), (8, True), (12, False)):
        d = root / f"checkpoint-{step}"
        d.mkdir(parents=True)
        (d / "model.safetensors").write_bytes(b"x")
        (d / "trainer_state.json").write_text("{}" if complete else '{"global_st')
    assert checkpoints.latest_checkpoint(root).name == "checkpoint-8"
    assert checkpoints.latest_checkpoint(tmp_path / "none") is None


def test_summarization_resume_writes_the_same_predictions(tmp_path, capsys):
    """The generations of earlier evaluations (the best one's file) survive a resume."""
    import shutil

    from experiments import summarization

    d = tmp_path / "summ" / "xsum"
    d.mkdir(parents=True)
    rows = [
        {"document": f"the cat sat on mat {i} " * 3, "summary": f"cat {i}", "id": i}
        for i in range(24)
    ]
    (d / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    def run(out):
        return summarization.main(
            ["--dataset", "xsum", "--data-dir", str(d), "--output-dir", str(out)]
            + ["--run-name", "s", "--max-steps", "8", "--evals", "2", "--num-beams", "1"]
            + ["--max-eval-samples", "4", "--max-length", "32", "--max-target-length", "8"]
            + [
                "--batch-size",
                "4",
                "--save-steps",
                "2",
                "--keep-checkpoints",
                "--wandb",
                "disabled",
            ]
        )

    ref = run(tmp_path / "ref")
    out = tmp_path / "run"
    run(out)
    for p in out.glob("s.*"):  # killed after checkpoint 6: no result, no predictions
        p.unlink()
    shutil.rmtree(checkpoint_root(out, "s") / "checkpoint-8")
    capsys.readouterr()
    rec = run(out)
    assert "resuming from" in capsys.readouterr().out
    assert _strip(rec["metrics"]["evals"]) == _strip(ref["metrics"]["evals"])
    files = sorted(p.name for p in (tmp_path / "ref").glob("s.*"))
    assert files == sorted(p.name for p in out.glob("s.*")) and "s.predictions.jsonl" in files
    for name in files[1:]:
        assert (out / name).read_text() == (tmp_path / "ref" / name).read_text(), name
