"""The converged grid's planner (scripts/plan_converged.py, protocol version 2 in
scripts/protocol.py): stages unlock as results land; selection runs are never report runs."""

from __future__ import annotations

import json

from experiments.results import write_result
from scripts import plan_converged as P
from scripts import protocol
from scripts.grid.command import flag_value
from tests.test_report_converged import record


def _names(jobs, stage=None):
    return [j.name for j in jobs if stage is None or j.stage == stage]


def _flag(job, flag):
    return flag_value(job.flags, flag)


def _only(monkeypatch, **epochs):
    monkeypatch.setattr(P, "EPOCHS", {t: epochs.get(t) for t in protocol.TASKS})


def _land_sweep(root, task, arm, best, score_of=lambda lr, a: 0.5, **kw):
    """Write ``arm``'s whole sweep on ``task``; ``best`` (lr text, alpha text or None) scores
    0.9, the others ``score_of``."""
    a = protocol.ARM[arm]
    ranks = {"init_r": 3, "target_r": float(a.rbar)}
    if arm.startswith("adalora_"):
        init = int(flag_value(a.flags, "--init-r"))
        ranks = {"init_r": init, "target_r": float(a.rbar)}
    for job in P._sweep_jobs(a, task, 3, 0):
        lr = _flag(job, "--lr")
        alpha = _flag(job, "--lora-alpha")
        score = 0.9 if (lr, alpha) == best else score_of(lr, alpha)
        method = _flag(job, "--method")
        extra = {"lora_r": a.lora_r, "alpha": float(alpha)} if alpha else {}
        write_result(record(job.name, [0.3, score], task=task, method=method, lr=float(lr),
                            **extra, **ranks, **kw), root / "sweep")  # fmt: skip


def test_only_calibration_before_epochs_are_chosen(tmp_path, monkeypatch):
    _only(monkeypatch)
    jobs = P.plan(tmp_path)
    assert {j.stage for j in jobs} == {"calibration"}
    assert "calib-stsb-adalora" in _names(jobs) and "calib-sst2-lora" in _names(jobs)
    stsb = next(j for j in jobs if j.name == "calib-stsb-lora")
    assert _flag(stsb, "--epochs") == "10" and _flag(stsb, "--evals") == "10"
    assert _flag(stsb, "--precision") == "bf16" and _flag(stsb, "--lora-alpha") == "16"
    cmd = stsb.command("python", tmp_path)
    assert cmd[cmd.index("--output-dir") + 1] == str(tmp_path / "calibration")


def test_sweeps_of_every_budget(tmp_path, monkeypatch):
    _only(monkeypatch, stsb=3, sst2=3)
    jobs = P.plan(tmp_path / "converged")
    sweep = [j for j in jobs if j.stage == "sweep"]
    by_arm = {}
    for j in sweep:
        arm = j.name.split("-")[2]
        by_arm.setdefault((_flag(j, "--task"), arm), []).append(j)
    n_lr, n_lora = len(protocol.LRS), len(protocol.LRS) * len(protocol.LORA_SCALES)
    expect_stsb = {"adalora": n_lr, "lora_r2": n_lora, "adalora_12to8": n_lr,
                   "lora_r8": n_lora, "adalora_2to1": n_lr, "lora_r1": n_lora,
                   "adalora_4to2": n_lr, "full": 3}  # fmt: skip
    assert {a: len(v) for (t, a), v in by_arm.items() if t == "stsb"} == expect_stsb
    # SST-2: r = 2 and r = 8 only (r = 1 and 4 -> 2 cost three times as much there)
    assert {a for (t, a) in by_arm if t == "sst2"} == {"adalora", "lora_r2", "adalora_12to8",
                                                       "lora_r8", "full"}  # fmt: skip
    ada8 = by_arm[("stsb", "adalora_12to8")][0]
    assert (_flag(ada8, "--init-r"), _flag(ada8, "--target-r")) == ("12", "8")
    assert {_flag(j, "--lora-alpha") for j in by_arm[("stsb", "lora_r8")]} == {"8", "64"}
    assert {_flag(j, "--lora-alpha") for j in by_arm[("stsb", "lora_r1")]} == {"1", "8"}
    assert {_flag(j, "--lora-alpha") for j in by_arm[("stsb", "lora_r2")]} == {"2", "16"}
    a21 = by_arm[("stsb", "adalora_2to1")][0]
    assert (_flag(a21, "--init-r"), _flag(a21, "--target-r")) == ("2", "1")
    a42 = by_arm[("stsb", "adalora_4to2")][0]
    assert (_flag(a42, "--init-r"), _flag(a42, "--target-r")) == ("4", "2")
    assert all(_flag(j, "--seed") == str(protocol.SELECTION_SEED) for j in sweep)
    # priority: r = 2, then r = 8, r = 1, 4 -> 2, full fine-tuning
    tiers = {a: j[0].tier for (t, a), j in by_arm.items() if t == "stsb"}
    assert tiers["adalora"] < tiers["adalora_12to8"] < tiers["adalora_2to1"]
    assert tiers["adalora_2to1"] < tiers["adalora_4to2"] < tiers["full"]
    assert [j.tier for j in jobs] == sorted(j.tier for j in jobs)


def test_report_seeds_never_include_the_selection_run(tmp_path, monkeypatch):
    _only(monkeypatch, stsb=3)
    root = tmp_path / "converged"
    _land_sweep(root, "stsb", "adalora", ("1e-3", None))
    _land_sweep(root, "stsb", "lora_r2", ("5e-4", "16"))
    jobs = P.plan(root)
    seeds = [j for j in jobs if j.stage == "seeds"]
    ada = [j for j in seeds if "-adalora-" in j.name]
    assert [_flag(j, "--seed") for j in ada] == [str(s) for s in protocol.REPORT_SEEDS]
    assert {_flag(j, "--lr") for j in ada} == {"1e-3"}
    lora = [j for j in seeds if "lora_r2" in j.name]
    assert [_flag(j, "--seed") for j in lora] == [str(s) for s in protocol.REPORT_SEEDS]
    assert {(_flag(j, "--lr"), _flag(j, "--lora-alpha")) for j in lora} == {("5e-4", "16")}
    # LoRA r=3 at LoRA r=2's LR and scale (16 / 2 = 24 / 3); version 1's seed 1 kept
    r3 = [j for j in seeds if "lora_r3" in j.name]
    assert {_flag(j, "--lora-alpha") for j in r3} == {"24"}
    assert [int(_flag(j, "--seed")) for j in r3] == [1, 2, 3, 4, 5, 6]
    # rank-pattern LoRA: seed 1 (version 1) from AdaLoRA's sweep run; the others wait
    rp = [j for j in seeds if "lora_rp" in j.name]
    assert [_flag(j, "--seed") for j in rp] == ["1"]
    assert _flag(rp[0], "--rank-pattern-from").endswith("sweep/conv-stsb-adalora-lr1e-3-s1.json")
    # AdaLoRA's seed 4 lands: the rank-pattern run of seed 4 follows, from that file
    write_result(record("conv-stsb-adalora-lr1e-3-s4", [0.3, 0.8], task="stsb", seed=4),
                 root / "seeds")  # fmt: skip
    rp = [j for j in P.plan(root) if "lora_rp" in j.name]
    assert [_flag(j, "--seed") for j in rp] == ["1", "4"]
    assert _flag(rp[1], "--rank-pattern-from").endswith("seeds/conv-stsb-adalora-lr1e-3-s4.json")
    assert _flag(rp[1], "--lora-alpha") == "16" and _flag(rp[1], "--lr") == "5e-4"


def test_budget_eight_arms_follow_their_sources(tmp_path, monkeypatch):
    _only(monkeypatch, mrpc=3)
    root = tmp_path / "converged"
    _land_sweep(root, "mrpc", "adalora_12to8", ("2e-3", None))
    seeds = [j for j in P.plan(root) if j.stage == "seeds"]
    # AdaLoRA 12 -> 8's seeds; SVD-LoRA r=8 at AdaLoRA 12->8's LR (not swept): all report seeds
    ada = [j for j in seeds if "-adalora_12to8-" in j.name]
    assert [_flag(j, "--seed") for j in ada] == ["2", "3", "4", "5", "6"]
    assert {(_flag(j, "--init-r"), _flag(j, "--target-r"), _flag(j, "--lr")) for j in ada} == {
        ("12", "8", "2e-3")
    }
    svd = [j for j in seeds if "svd_lora_r8" in j.name]
    assert [_flag(j, "--seed") for j in svd] == ["2", "3", "4", "5", "6"]
    assert {(_flag(j, "--method"), _flag(j, "--target-r"), _flag(j, "--lr")) for j in svd} == {
        ("svd_lora", "8", "2e-3")
    }
    assert not [j for j in seeds if "-lora_r8-" in j.name or "-lora_rp8-" in j.name]
    _land_sweep(root, "mrpc", "lora_r8", ("1e-3", "8"))
    write_result(record("conv-mrpc-adalora_12to8-lr2e-3-s3", [0.3, 0.8], task="mrpc", seed=3,
                        init_r=12, target_r=8.0), root / "seeds")  # fmt: skip
    seeds = [j for j in P.plan(root) if j.stage == "seeds"]
    rp = [j for j in seeds if "lora_rp8" in j.name]
    assert [_flag(j, "--seed") for j in rp] == ["3"]  # the selection seed's run is not reported
    assert _flag(rp[0], "--rank-pattern-from").endswith(
        "seeds/conv-mrpc-adalora_12to8-lr2e-3-s3.json"
    )
    assert (_flag(rp[0], "--lr"), _flag(rp[0], "--lora-alpha"), _flag(rp[0], "--target-r")) == (
        "1e-3", "8", "8"
    )  # fmt: skip
    lora = [j for j in seeds if "-lora_r8-" in j.name]
    assert {(_flag(j, "--lr"), _flag(j, "--lora-alpha")) for j in lora} == {("1e-3", "8")}


def test_seeds_wait_for_the_whole_sweep_and_come_task_by_task(tmp_path, monkeypatch):
    _only(monkeypatch, stsb=3, mrpc=3)
    root = tmp_path / "converged"
    out = root / "sweep"
    lrs = protocol.LRS[:2]  # half of AdaLoRA's sweep: its best so far must not pick the seeds' LR
    for lr in lrs:
        write_result(record(f"conv-stsb-adalora-lr{lr}-s1", [0.4, 0.8], task="stsb",
                            lr=float(lr)), out)  # fmt: skip
    assert not [j for j in P.plan(root) if j.stage == "seeds"]
    for lr in protocol.LRS[2:]:
        write_result(record(f"conv-stsb-adalora-lr{lr}-s1", [0.4, 0.5], task="stsb",
                            lr=float(lr)), out)  # fmt: skip
    jobs = P.plan(root)
    seeds = [j for j in jobs if j.stage == "seeds"]
    assert seeds and all("-stsb-adalora-" in j.name for j in seeds)  # LoRA's sweep is not done
    # STS-B's r = 2 seed runs come before MRPC's r = 2 sweep (per task: sweep, then seeds)
    order = [j.name for j in jobs]
    first_mrpc = min(i for i, n in enumerate(order) if n.startswith("conv-mrpc-"))
    assert max(order.index(j.name) for j in seeds) < first_mrpc


def test_ablations_skip_the_selected_value(tmp_path, monkeypatch):
    _only(monkeypatch, stsb=3)
    root = tmp_path / "converged"
    _land_sweep(root, "stsb", "adalora", ("1e-3", None))
    abl = [j for j in P.plan(root) if j.stage == "ablations"]
    n_values = sum(len(v) for v in protocol.ABLATIONS.values()) - len(protocol.ABLATIONS)
    assert len(abl) == (n_values + len(protocol.COMPONENTS)) * len(protocol.ABLATION_SEEDS)
    svd = next(j for j in abl if j.name == "conv-stsb-svd_lora-gamma0-s2")
    assert _flag(svd, "--method") == "svd_lora" and _flag(svd, "--lr") == "1e-3"
    assert _flag(svd, "--orth-reg-weight") == "0" and _flag(svd, "--target-r") == "2"
    assert json.loads(_flag(svd, "--sweep-json")) == {"orth_reg_weight": 0}
    assert "--sweep-json" not in next(j for j in abl if j.name == "conv-stsb-svd_lora-s1").flags
    for key, value in protocol.SELECTED_SCHEDULE.items():
        assert not any(f"-{key}{value}-" in j.name for j in abl), key
    assert any("-schedule" + "linear-" in j.name for j in abl)


def test_every_planned_command_passes_glue_checks(tmp_path, monkeypatch):
    """Each command the planner would start now (every stage and budget, the committed evidence
    as it stands) passes glue.py's own flag checks: a planned run never fails at its start."""
    from scripts.grid.command import check_glue_argv

    monkeypatch.setenv("GLUE_DIR", str(tmp_path))  # checked as a folder, not read
    root = P.Path(__file__).resolve().parents[1] / "results" / "evidence" / "converged"
    jobs = P.plan(root)
    kinds = {}
    for j in jobs:
        key = (j.stage, _flag(j, "--method"), _flag(j, "--target-r"))
        kinds.setdefault(key, j)  # one command per kind keeps the test fast
    full = [j for j in jobs if _flag(j, "--method") == "full"]
    assert full and {_flag(j, "--target-r") for j in full} == {"2"}
    for j in kinds.values():
        check_glue_argv(j.argv(tmp_path / "out"))
