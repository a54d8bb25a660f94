"""scripts/bench_step.py end to end on a tiny BERT built from config (seconds): every variant
timed, allocation quartiles reported, ours and PEFT's AdaLoRA masked to the same ranks."""

import json

import pytest

from scripts import bench_step


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    pytest.importorskip("peft")
    out = tmp_path_factory.mktemp("bench_step") / "bench.json"
    argv = [
        "--model", "tiny-bert-base", "--batch-size", "2", "--seq-len", "8", "--init-r", "4",
        "--target-r", "2", "--iters", "4", "--warmup", "2", "--block", "2", "--threads", "1",
        "--device", "cpu", "--variants", "ours_lora,ours_adalora,peft_adalora",
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
    assert rec["n_adapted_matrices"] == 12 and rec["args"]["total_step"] == 2 * (2 + 4) + 1


def test_adalora_masked_like_peft(run):
    res, *_ = run
    # b0 = 4 x 12 = 48; tinit 1 < warm-up 2 and deltaT 1: masks from the warm-up on, the
    # budget shrinking towards bT = 24 (T = 13 is never reached)
    kept = res["_budget_check"]
    assert kept["ours_final_kept"] == kept["peft_final_kept"]
    assert 24 <= kept["ours_final_kept"] < 48
    assert res["ours_lora"]["alloc_ms_median"] < res["ours_adalora"]["alloc_ms_median"]
