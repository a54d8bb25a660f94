"""scripts/bench_train.py end to end on a tiny BERT and a few synthetic STS-B rows (seconds)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import bench_train
from tests.helpers import save_tiny_model, write_glue_dir

ROOT = Path(__file__).resolve().parents[1]


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


# bench_train.py's bad input: argv -> the one line on stderr (exit status 2, nothing written).
BAD = {
    "rounds-0": (
        ["--rounds", "0"],
        "--rounds 0: must be a positive integer; pass --rounds 1 or more",
    ),
    "steps-0": (
        ["--steps-per-round", "0"],
        "--steps-per-round 0: must be a positive integer; pass --steps-per-round 1 or more",
    ),
    "warmup-negative": (
        ["--warmup-steps", "-1"],
        "--warmup-steps -1: must be an integer >= 0; pass --warmup-steps 0 or more",
    ),
    "threads-0": (
        ["--threads", "0"],
        "--threads 0: must be a positive integer; pass --threads 1 or more",
    ),
    "batch-0": (
        ["--batch-size", "0"],
        "--batch-size 0: must be a positive integer; pass --batch-size 1 or more",
    ),
    "max-length-4": (
        ["--max-length", "4"],
        "--max-length 4: must be an integer >= 8; pass --max-length 8 or more",
    ),
    "target-r-nan": (
        ["--target-r", "nan"],
        "--target-r nan: must be an average rank, finite and > 0; pass e.g. --target-r 2",
    ),
    "target-above-init": (
        ["--target-r", "4"],
        "--target-r 4: above --init-r 3: AdaLoRA only prunes; pass --init-r 4 or more",
    ),
    "lora-r-0": (
        ["--method", "lora", "--lora-r", "0"],
        "--lora-r 0: must be a positive integer; pass --lora-r 1 or more",
    ),
    "eval-sizes": (
        ["--eval-batch-sizes", "32,x"],
        "--eval-batch-sizes 32,x: not a comma-separated list of batch sizes >= 1; "
        "pass e.g. --eval-batch-sizes 32,128",
    ),
    "eval-repeats": (
        ["--eval-repeats", "-1"],
        "--eval-repeats -1: must be an integer >= 0; pass --eval-repeats 0 or more",
    ),
    "seed": (["--seed", "-1"], "--seed -1: must be in [0, 2^32); pass --seed 0 or more"),
    "model": (
        ["--model", "OUT/none"],
        "--model OUT/none: no such folder; pass minilm or a model folder",
    ),
    "data-dir": (
        ["--data-dir", "OUT/none"],
        "--data-dir OUT/none: no such folder; "
        "pass the GLUE folder (the one holding STS-B/, RTE/, ...)",
    ),
    "task": (
        ["--task", "nope"],
        "argument --task: invalid choice: 'nope' (choose from 'sst2', 'cola', 'mrpc', "
        "'qqp', 'stsb', 'mnli', 'qnli', 'rte') (--help lists the flags)",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line(case, tmp_path, capsys):
    argv, line = BAD[case]
    out = tmp_path / "o" / "bench.json"
    argv = [a.replace("OUT", str(tmp_path)) for a in argv]
    with pytest.raises(SystemExit) as e:
        bench_train.main([*argv, "--out", str(out)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err == f"bench_train.py: error: {line.replace('OUT', str(tmp_path))}\n"
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny BERT (128 positions, 32 x 32 / 32 x 64 matrices) and STS-B rows."""
    tmp = tmp_path_factory.mktemp("bench_train_bad")
    model = save_tiny_model(tmp / "tiny-bert")
    return model, write_glue_dir(tmp / "glue", tasks=["stsb"], n_train=16, n_eval=8)


# What bench_train.py refuses about its output, its data and (right after loading, through
# glue.py's own checks) the model: argv -> the line. "DATA": the tiny fixture's GLUE folder;
# "OUT": the test's folder, which holds old.json.
BAD_AFTER = {
    "out-exists": (
        ["--out", "OUT/old.json"],
        "--out OUT/old.json: already exists and results are never overwritten; "
        "pass another --out, or delete the file to measure again",
    ),
    "out-is-a-folder": (
        ["--out", "OUT"],
        "--out OUT: is a folder; pass a file path, e.g. OUT/out.json",
    ),
    "task-not-in-data": (
        ["--task", "rte"],
        "--data-dir DATA: GLUE file not found: DATA/RTE/train.tsv; pass --data-dir DIR or set "
        "GLUE_DIR=DIR to a folder in the official GLUE layout (DIR/RTE/train.tsv) or to the "
        "task's own folder (DIR/train.tsv)",
    ),
    "max-length-past-positions": (
        ["--max-length", "200"],
        "--max-length 200: longer than the model's 128 positions (bert: longer inputs index "
        "past its position table); pass --max-length 128 or less",
    ),
    "init-r-past-matrices": (
        ["--init-r", "40"],
        "--init-r 40: init_r 40 exceeds 32, the smaller side of the adapted matrix "
        "bert.encoder.layer.0.attention.self.query (32 x 32): a rank above min(in, out) "
        "cannot be used; pass --init-r 32 or less",
    ),
}


@pytest.mark.parametrize("case", BAD_AFTER)
def test_bad_output_data_or_model_is_one_line(case, tiny, tmp_path, capsys):
    model, glue = tiny
    argv, line = BAD_AFTER[case]
    (tmp_path / "old.json").write_text("{}")
    before = sorted(tmp_path.rglob("*"))
    if "--out" not in argv:
        argv = [*argv, "--out", "OUT/new/bench.json"]
    argv = ["--model", str(model), "--data-dir", str(glue), "--rounds", "1", *argv]
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        bench_train.main([a.replace("OUT", str(tmp_path)) for a in argv])
    assert e.value.code == 2 and sorted(tmp_path.rglob("*")) == before
    err = capsys.readouterr().err.splitlines()[-1]  # after the model's load report, if any
    want = line.replace("OUT", str(tmp_path)).replace("DATA", str(glue))
    assert err == f"bench_train.py: error: {want}"


def test_default_out_is_never_overwritten(tmp_path, capsys, monkeypatch):
    old = tmp_path / "results" / "bench" / "train_cpu_stsb_adalora.json"
    old.parent.mkdir(parents=True)
    old.write_text("{}")
    monkeypatch.setattr(bench_train, "ROOT", tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        bench_train.main([])
    assert e.value.code == 2 and old.read_text() == "{}"
    assert capsys.readouterr().err == (
        "bench_train.py: error: --out results/bench/train_cpu_stsb_adalora.json (the default): "
        "already exists and results are never overwritten; pass another --out, or delete the "
        "file to measure again\n"
    )


def test_no_data_folder_anywhere(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GLUE_DIR", raising=False)
    monkeypatch.setattr(bench_train, "SHARED_GLUE", tmp_path / "shared" / "data" / "glue")
    with pytest.raises(SystemExit) as e:
        bench_train.main(["--out", str(tmp_path / "o" / "b.json")])
    assert e.value.code == 2 and not (tmp_path / "o").exists()
    assert capsys.readouterr().err == (
        f"bench_train.py: error: --data-dir: not given, $GLUE_DIR is unset and "
        f"{tmp_path / 'shared' / 'data' / 'glue'} is not there; "
        "pass the GLUE folder (the one holding STS-B/, RTE/, ...)\n"
    )


def test_bad_input_from_the_command(tmp_path):
    """The command itself: stderr is the line and nothing else, exit status 2."""
    out = tmp_path / "b.json"
    r = subprocess.run(
        [sys.executable, "scripts/bench_train.py", "--rounds", "0", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 2 and not out.exists()
    assert r.stderr == (
        "bench_train.py: error: --rounds 0: must be a positive integer; pass --rounds 1 or more\n"
    )
