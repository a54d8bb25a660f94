"""The converged grid's planner (scripts/plan_converged.py): stages unlock as results land."""

from __future__ import annotations

import json

from experiments.results import write_result
from scripts import plan_converged as P
from tests.test_report_converged import record


def _names(jobs, stage=None):
    return [j.name for j in jobs if stage is None or j.stage == stage]


def _flag(job, flag):
    return job.flags[job.flags.index(flag) + 1]


def test_only_calibration_before_epochs_are_chosen(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "EPOCHS", {t: None for t in P.TASKS})
    jobs = P.plan(tmp_path)
    assert {j.stage for j in jobs} == {"calibration"}
    assert "calib-stsb-adalora" in _names(jobs) and "calib-sst2-lora" in _names(jobs)
    stsb = next(j for j in jobs if j.name == "calib-stsb-lora")
    assert _flag(stsb, "--epochs") == "10" and _flag(stsb, "--evals") == "10"
    assert _flag(stsb, "--precision") == "bf16" and _flag(stsb, "--lora-alpha") == "16"
    cmd = stsb.command("python", tmp_path)
    assert cmd[cmd.index("--output-dir") + 1] == str(tmp_path / "calibration")


def test_sweep_then_seeds_at_the_selected_setting(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "EPOCHS", {"stsb": 3, "mrpc": None, "cola": None, "sst2": None})
    root = tmp_path / "converged"  # the report counts runs below a "converged" folder
    sweep = P.plan(root)
    names = _names(sweep, "sweep")
    assert len([n for n in names if n.startswith("conv-stsb-adalora")]) == len(P.LRS)
    assert len([n for n in names if "lora_r2" in n]) == len(P.LRS) * len(P.LORA_ALPHAS)
    assert not _names(sweep, "seeds")  # nothing selected yet
    # the sweep lands: AdaLoRA best at 1e-3, LoRA best at 5e-4 with alpha 16
    out = root / "sweep"
    for lr in P.LRS:
        score = 0.8 if lr == "1e-3" else 0.5
        write_result(record(f"conv-stsb-adalora-lr{lr}-s1", [0.4, score], task="stsb",
                            lr=float(lr)), out)  # fmt: skip
        for alpha in P.LORA_ALPHAS:
            score = 0.7 if (lr, alpha) == ("5e-4", "16") else 0.3
            write_result(record(f"conv-stsb-lora_r2-lr{lr}-a{alpha}-s1", [0.2, score],
                                task="stsb", method="lora", lr=float(lr), alpha=float(alpha),
                                lora_r=2), out)  # fmt: skip
    jobs = P.plan(root)
    seeds = [j for j in jobs if j.stage == "seeds"]
    ada = [j for j in seeds if "-adalora-" in j.name]
    assert [_flag(j, "--seed") for j in ada] == ["2", "3", "4", "5"]
    assert {_flag(j, "--lr") for j in ada} == {"1e-3"}
    lora = [j for j in seeds if "lora_r2" in j.name]
    assert {(_flag(j, "--lr"), _flag(j, "--lora-alpha")) for j in lora} == {("5e-4", "16")}
    r3 = [j for j in seeds if "lora_r3" in j.name]
    assert {_flag(j, "--lora-alpha") for j in r3} == {"24"} and len(r3) == 5  # same scale 8
    # rank-pattern LoRA: seed 1 from AdaLoRA's sweep run, the others wait for AdaLoRA's seeds
    rp = [j for j in seeds if "lora_rp" in j.name]
    assert [_flag(j, "--seed") for j in rp] == ["1"]
    assert _flag(rp[0], "--rank-pattern-from").endswith("sweep/conv-stsb-adalora-lr1e-3-s1.json")
    abl = [j for j in jobs if j.stage == "ablations"]
    # every knob value but the one the selected setting has (the main cell is that point)
    n_values = sum(len(v) for v in P.ABLATIONS.values()) - len(P.ABLATIONS)
    assert len(abl) == (n_values + len(P.COMPONENTS)) * len(P.ABLATION_SEEDS)
    svd = next(j for j in abl if j.name == "conv-stsb-svd_lora-gamma0-s2")
    assert _flag(svd, "--method") == "svd_lora" and _flag(svd, "--lr") == "1e-3"
    assert _flag(svd, "--orth-reg-weight") == "0" and _flag(svd, "--target-r") == "2"
    assert json.loads(_flag(svd, "--sweep-json")) == {"orth_reg_weight": 0}
    assert "--sweep-json" not in next(j for j in abl if j.name == "conv-stsb-svd_lora-s1").flags
    skipped = {"tinit_frac": "0.15", "tfinal_frac": "0.45", "delta_t": "10", "schedule": "cubic"}
    for key, value in skipped.items():
        assert not any(f"-{key}{value}-" in j.name for j in abl), key
    assert any("-schedule" + "linear-" in j.name for j in abl)
    # priorities: AdaLoRA / LoRA r=2 / rank-pattern seeds before ablations, LoRA r=3 and full FT
    tiers = [j.tier for j in jobs]
    assert tiers == sorted(tiers)


def test_seeds_wait_for_the_whole_sweep_and_come_task_by_task(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "EPOCHS", {"stsb": 3, "mrpc": 3, "cola": None, "sst2": None})
    root = tmp_path / "converged"
    out = root / "sweep"
    lrs = P.LRS[:2]  # half of AdaLoRA's sweep: its best so far must not pick the seeds' LR
    for lr in lrs:
        write_result(record(f"conv-stsb-adalora-lr{lr}-s1", [0.4, 0.8], task="stsb",
                            lr=float(lr)), out)  # fmt: skip
    assert not [j for j in P.plan(root) if j.stage == "seeds"]
    for lr in P.LRS[2:]:
        write_result(record(f"conv-stsb-adalora-lr{lr}-s1", [0.4, 0.5], task="stsb",
                            lr=float(lr)), out)  # fmt: skip
    jobs = P.plan(root)
    seeds = [j for j in jobs if j.stage == "seeds"]
    assert seeds and all("-stsb-adalora-" in j.name for j in seeds)  # LoRA's sweep is not done
    # STS-B's seed runs come before MRPC's sweep (per task: sweep, then seeds)
    order = [j.name for j in jobs]
    first_mrpc = min(i for i, n in enumerate(order) if n.startswith("conv-mrpc-"))
    assert max(order.index(j.name) for j in seeds) < first_mrpc
