"""scripts/bench_train.py end to end on a tiny BERT and a few synthetic STS-B rows (seconds)."""

import json
import math

import pytest

from scripts import bench_train
from tests.helpers import save_tiny_model, write_glue_dir


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench_train")
    model = save_tiny_model(tmp / "tiny-bert")
    glue = write_glue_dir(tmp / "glue", tasks=["stsb"], n_train=40, n_eval=12)
    out = tmp / "train_cpu_stsb_adalora.json"
    argv = [
        "--task", "stsb", "--method", "adalora", "--model", str(model), "--data-dir", str(glue),
        "--rounds", "2", "--steps-per-round", "1", "--eval-batch-sizes", "4,8",
        "--eval-repeats", "1", "--out", str(out),
    ]  # fmt: skip
    ret = bench_train.main(argv)
    return ret, json.loads(out.read_text())


def test_json_structure(run):
    ret, rec = run
    assert rec["benchmark"] == "bench_train"
    assert rec["command"].split()[1] == "scripts/bench_train.py"
    for k in ("torch", "transformers", "python"):
        assert k in rec["versions"]
    assert {"cpu", "n_threads", "cpu_native_bf16"} <= set(rec["hardware"])
    s = rec["settings"]
    assert (s["task"], s["method"], s["rounds"], s["steps_per_round"]) == ("stsb", "adalora", 2, 1)
    assert s["hp"]["init_r"] == 3 and s["hp"]["target_r"] == 2
    assert set(rec["epoch"]) == {"random", "grouped"}
    names = {"fp32+random", "bf16+random", "fp32+grouped", "bf16+grouped"}
    assert set(rec["train"]) == set(rec["train_ratios"]) == names
    for r in rec["train"].values():
        assert r["steps"] == 2
        assert 0 < r["real_tokens"] <= r["padded_tokens"]
        assert r["real_tokens_per_s"] > 0 and r["all_losses_finite"]
        assert 0 <= r["padding_fraction"] < 1
        assert len(r["per_round_real_tokens_per_s"]) == 2
    ref = rec["train_ratios"]["fp32+random"]["real_tokens_per_s_ratio_per_round"]
    assert ref["median"] == ref["p25"] == ref["p75"] == 1.0
    for r in rec["train_ratios"].values():
        q = r["real_tokens_per_s_ratio_per_round"]
        assert q["n"] == 2 and q["p25"] <= q["median"] <= q["p75"]
        assert math.isfinite(r["real_tokens_per_s_ratio_of_totals"])
    assert set(rec["train_pair_ratios"]) == {
        "bf16/fp32 (random)", "bf16/fp32 (grouped)",
        "grouped/random (fp32)", "grouped/random (bf16)",
    }  # fmt: skip
    # bf16 and fp32 of one sampler train on the same batches from the same weights
    assert rec["train"]["bf16+random"]["real_tokens"] == rec["train"]["fp32+random"]["real_tokens"]
    ev = rec["eval"]
    assert set(ev) == {f"{o}+b{b}+{p}" for o in ("file", "sorted") for b in (4, 8)
                       for p in ("fp32", "bf16")}  # fmt: skip
    assert ev["file+b4+fp32"]["examples"] == 12 and ev["file+b4+fp32"]["batches"] == 3
    assert ev["sorted+b4+fp32"]["padding_fraction"] <= ev["file+b4+fp32"]["padding_fraction"]
    assert ret["train"].keys() == rec["train"].keys()


def test_lora_and_no_eval(tmp_path):
    model = save_tiny_model(tmp_path / "tiny-bert")
    glue = write_glue_dir(tmp_path / "glue", tasks=["mrpc"], n_train=20, n_eval=8)
    out = tmp_path / "lora.json"
    rec = bench_train.main(
        ["--task", "mrpc", "--method", "lora", "--model", str(model), "--data-dir", str(glue),
         "--rounds", "1", "--steps-per-round", "1", "--eval-repeats", "0", "--out", str(out)]
    )  # fmt: skip
    assert rec["settings"]["hp"]["lora_r"] == 2 and rec["eval"] is None
    assert json.loads(out.read_text())["train"]["bf16+grouped"]["steps"] == 1
