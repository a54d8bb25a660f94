"""scripts/bench_step.py end to end on a tiny BERT built from config (seconds): every variant
timed, allocation quartiles reported, ours and PEFT's AdaLoRA masked to the same ranks. Then
bad input: one exact line, exit status 2, no model built (the ranks against the built model
excepted), nothing written."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from scripts import bench_step

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    pytest.importorskip("peft")
    out = tmp_path_factory.mktemp("bench_step") / "bench.json"
    argv = [
        "--model", "tiny-bert-base", "--batch-size", "2", "--seq-len", "8", "--init-r", "4",
        "--target-r", "2", "--iters", "4", "--warmup", "2", "--block", "2", "--threads", "1",
        "--device", "cpu", "--variants", "ours_lora,ours_adalora,peft_adalora", "--profile",
        "--json-out", str(out),
    ]  # fmt: skip
    res, ratios = bench_step.main(argv)
    return res, ratios, json.loads(out.read_text())


def test_results_have_medians_and_quartiles(run):
    res, ratios, rec = run
    assert set(rec["results"]) == {"ours_lora", "ours_adalora", "peft_adalora", "_budget_check"}
    for name, r in rec["results"].items():
        if name.startswith("_"):
            continue
        assert r["iters"] == 4 and len(r["alloc_ms"]) == len(r["step_ms"]) == 4
        for key in ("step", "alloc", "total"):
            lo, mid, hi = r[f"{key}_ms_p25"], r[f"{key}_ms_median"], r[f"{key}_ms_p75"]
            assert lo <= mid <= hi, (name, key)
    for name in ("ours_adalora", "peft_adalora"):  # thread CPU time of the timed calls only
        r = rec["results"][name]
        assert len(r["alloc_cpu_ms"]) == 4
        assert r["alloc_cpu_ms_p25"] <= r["alloc_cpu_ms_median"] <= r["alloc_cpu_ms_p75"]
    assert "alloc_cpu_ms" not in rec["results"]["ours_lora"]
    assert {"ours_adalora/ours_lora:total", "peft_adalora/ours_adalora:alloc"} <= set(rec["ratios"])
    # warm-up 2, 4 timed iterations and the profiled one stay in the budgeting phase
    assert rec["n_adapted_matrices"] == 12 and rec["args"]["total_step"] == 2 * (2 + 4 + 1) + 1


def test_profile_counts_operators_of_the_step_and_the_allocation(run):
    res, _, rec = run
    assert set(rec["results"]["ours_lora"]["profile"]) == {"step"}  # LoRA allocates nothing
    for name in ("ours_adalora", "peft_adalora"):
        prof = rec["results"][name]["profile"]
        assert set(prof) == {"step", "allocate"}
        alloc = prof["allocate"]
        listed = sum(o["calls"] for k, o in alloc["ops"].items() if k.startswith("aten::"))
        assert alloc["aten_calls"] >= listed > 0 and alloc["self_cpu_ms"] > 0
        assert "aten::addmm" in prof["step"]["ops"] or "aten::mm" in prof["step"]["ops"]
    # PEFT's loop over every parameter makes many more operator calls than our whole-state ones
    ours = rec["results"]["ours_adalora"]["profile"]["allocate"]["aten_calls"]
    assert rec["results"]["peft_adalora"]["profile"]["allocate"]["aten_calls"] > 2 * ours


def test_adalora_masked_like_peft(run):
    res, *_ = run
    # b0 = 4 x 12 = 48; tinit 1 < warm-up 2 and deltaT 1: masks from the warm-up on, the
    # budget shrinking towards bT = 24 (T = 13 is never reached)
    kept = res["_budget_check"]
    assert kept["ours_final_kept"] == kept["peft_final_kept"]
    assert 24 <= kept["ours_final_kept"] < 48
    assert res["ours_lora"]["alloc_ms_median"] < res["ours_adalora"]["alloc_ms_median"]


# bench_step.py's bad input: argv -> the one line on stderr after "bench_step.py: error: "
# (exit status 2, no model built, nothing written). "OUT" stands for the test's folder.
VARIANTS = "ours_lora,ours_adalora,peft_adalora,peft_lora,full"
BAD = {
    "iters-0": (["--iters", "0"], "--iters 0: must be a positive integer; pass --iters 1 or more"),
    "threads-negative": (
        ["--threads", "-1"],
        "--threads -1: must be a positive integer; pass --threads 1 or more",
    ),
    "batch-size-nan": (
        ["--batch-size", "nan"],
        "argument --batch-size: invalid int value: 'nan' (--help lists the flags)",
    ),
    "seq-len-0": (
        ["--seq-len", "0"],
        "--seq-len 0: must be a positive integer; pass --seq-len 1 or more",
    ),
    "warmup-0": (
        ["--warmup", "0"],
        "--warmup 0: must be a positive integer; pass --warmup 1 or more",
    ),
    "block-0": (["--block", "0"], "--block 0: must be a positive integer; pass --block 1 or more"),
    "tinit-negative": (
        ["--tinit", "-1"],
        "--tinit -1: must be an integer >= 0; pass --tinit 0 or more",
    ),
    "seed": (["--seed", "-1"], "--seed -1: must be in [0, 2^32); pass --seed 0 or more"),
    "lr-nan": (
        ["--lr", "nan"],
        "--lr nan: must be a learning rate, finite and > 0; pass e.g. --lr 1e-3",
    ),
    "alpha-0": (
        ["--lora-alpha", "0"],
        "--lora-alpha 0: must be a scale, finite and > 0; pass e.g. --lora-alpha 32",
    ),
    "orth-inf": (
        ["--orth-reg-weight", "inf"],
        "--orth-reg-weight inf: must be a coefficient, finite and >= 0; "
        "pass e.g. --orth-reg-weight 0.1",
    ),
    "init-below-target": (
        ["--init-r", "4", "--target-r", "8"],
        "--target-r 8: above --init-r 4: AdaLoRA only prunes; pass --init-r 8 or more",
    ),
    "unknown-variant": (
        ["--variants", "ours_lora,peft_adalorra"],
        "--variants ours_lora,peft_adalorra: unknown variant 'peft_adalorra'; "
        f"pass a comma-separated subset of {VARIANTS}",
    ),
    "variant-twice": (
        ["--variants", "full,full"],
        f"--variants full,full: 'full' twice; pass a comma-separated subset of {VARIANTS}",
    ),
    "tinit-not-below-warmup": (
        ["--tinit", "3", "--warmup", "3"],
        "--tinit 3: not below --warmup 3: the timed steps must all mask; "
        "pass --tinit 2 or less, or --warmup 4 or more",
    ),
    "total-step-too-small-to-profile": (
        ["--total-step", "34", "--warmup", "3", "--iters", "30", "--profile"],
        "--total-step 34: not above the 34 iterations run (--warmup + --iters + 1 for "
        "--profile): the run must stay in the budgeting phase; pass --total-step 35 or more, "
        "or leave it out",
    ),
    "total-step-too-small": (
        ["--total-step", "20", "--warmup", "3", "--iters", "30"],
        "--total-step 20: not above the 33 iterations run (--warmup + --iters): the run must "
        "stay in the budgeting phase; pass --total-step 34 or more, or leave it out",
    ),
    "model-missing": (
        ["--model", "OUT/nomodel"],
        "--model OUT/nomodel: not a model name nor a folder; pass one of minilm, "
        "deberta-v3-base, bart-large, bert-base, tiny-deberta-v3-base, tiny-bart-large, "
        "tiny-bert-base, or a local model folder",
    ),
    "model-not-a-model-folder": (
        ["--model", "OUT"],
        "--model OUT: no config.json there (not a model folder); pass a model folder",
    ),
    "json-out-exists": (
        ["--json-out", "OUT/old.json"],
        "--json-out OUT/old.json: already exists and results are never overwritten; "
        "pass another --json-out, or delete the file to measure again",
    ),
    "json-out-folder": (
        ["--json-out", "OUT"],
        "--json-out OUT: is a folder; pass a file path, e.g. OUT/out.json",
    ),
    "json-out-under-a-file": (
        ["--json-out", "OUT/old.json/b.json"],
        "--json-out OUT/old.json/b.json: OUT/old.json is a file, not a folder; "
        "pass a path inside a folder",
    ),
}
TINY = ["--model", "tiny-bert-base", "--batch-size", "2", "--seq-len", "8", "--device", "cpu"]


def _bad(argv, tmp_path, capsys, monkeypatch) -> str:
    """Run bench_step.main on ``argv`` ("OUT": tmp_path) with model building forbidden; the
    stderr it ends with (exit status 2, nothing new in tmp_path)."""
    (tmp_path / "old.json").write_text("{}")
    before = sorted(tmp_path.rglob("*"))

    def no_model(*a, **k):
        raise AssertionError("a model was built before the flags were checked")

    monkeypatch.setattr(bench_step, "build_base", no_model)
    argv = [a.replace("OUT", str(tmp_path)) for a in argv]
    with pytest.raises(SystemExit) as e:
        bench_step.main([*TINY, *argv])
    assert e.value.code == 2
    assert sorted(tmp_path.rglob("*")) == before
    return capsys.readouterr().err


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line(case, tmp_path, capsys, monkeypatch):
    argv, line = BAD[case]
    err = _bad([*argv, "--json-out", "OUT/new.json"] if "--json-out" not in argv else argv,
               tmp_path, capsys, monkeypatch)  # fmt: skip
    assert err == f"bench_step.py: error: {line.replace('OUT', str(tmp_path))}\n"


def test_cuda_without_cuda(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    err = _bad(["--device", "cuda"], tmp_path, capsys, monkeypatch)
    assert err == (
        "bench_step.py: error: --device cuda: CUDA is not available here; "
        "use --device cpu, or auto (CUDA when there is one)\n"
    )


def test_peft_variants_without_peft(tmp_path, capsys, monkeypatch):
    real = bench_step.find_spec
    monkeypatch.setattr(bench_step, "find_spec", lambda n: None if n == "peft" else real(n))
    err = _bad(["--variants", "ours_lora,peft_lora"], tmp_path, capsys, monkeypatch)
    assert err == (
        "bench_step.py: error: --variants ours_lora,peft_lora: the peft_ variants need PEFT, "
        "which is not installed; pip install peft, or drop the peft_ variants\n"
    )


def test_seq_len_past_the_positions_of_a_model_folder(tmp_path, capsys, monkeypatch):
    from tests.helpers import save_tiny_model

    model = save_tiny_model(tmp_path / "tiny")  # 128 positions
    capsys.readouterr()  # its saving progress bar
    err = _bad(["--model", str(model), "--seq-len", "129"], tmp_path, capsys, monkeypatch)
    assert err == (
        f"bench_step.py: error: --seq-len 129: exceeds the 128 positions of {model}; "
        "pass --seq-len 128 or less\n"
    )


def test_init_r_past_the_matrices_is_refused_right_after_building(tmp_path, capsys):
    """The tiny models' matrices are 64 wide: a rank above is refused before any variant is
    made (the model is built, nothing is trained or written)."""
    out = tmp_path / "b.json"
    with pytest.raises(SystemExit) as e:
        bench_step.main([*TINY, "--init-r", "65", "--target-r", "2", "--json-out", str(out)])
    assert e.value.code == 2 and not out.exists()
    err = capsys.readouterr().err
    assert err == (
        "bench_step.py: error: --init-r 65: exceeds 64, the smaller side of the 64 x 64 matrix "
        "bert.encoder.layer.0.attention.self.query; pass --init-r 64 or less\n"
    )


def test_bad_input_from_the_command(tmp_path):
    """The command itself: stderr is the line and nothing else, exit status 2."""
    r = subprocess.run(
        [sys.executable, "scripts/bench_step.py", "--iters", "0",
         "--json-out", str(tmp_path / "b.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 2 and not any(tmp_path.iterdir())
    assert (
        r.stderr
        == "bench_step.py: error: --iters 0: must be a positive integer; pass --iters 1 or more\n"
    )
