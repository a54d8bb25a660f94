"""scripts/bench_onednn_cache.py: its request counting, commands and refusals (no training)."""

import argparse

import pytest

from scripts import bench_onednn_cache as bench

MISS = "onednn_verbose,v1,primitive,create:cache_miss,cpu,matmul,brg,...,960x384:384x11,0.3"
HIT = "onednn_verbose,v1,primitive,create:cache_hit,cpu,matmul,brg,...,960x384:384x11,0.01"


def test_count_requests_splits_at_half_of_the_steps():
    # progress-bar updates come as \r-separated pieces, oneDNN's lines as \n-separated ones
    out = "\n".join(
        [MISS, MISS, HIT, "\r  1%|          | 2/8 [00:01<00:03]", MISS, HIT]  # steps <= 4
        + ["\r 50%|#####     | 4/8 [00:02<00:02]", MISS]  # step 4 is not past half
        + ["\r 62%|######    | 5/8 [00:03<00:01]", MISS, HIT, HIT]
        + ["eval 3/7 [00:01<00:02]", MISS]  # another bar (7 steps) does not move the step
        + ["\r100%|##########| 8/8 [01:05<00:00]", HIT]
    )
    c = bench.count_requests(out, max_steps=8)
    counts = {k: c[k] for k in ("miss_all", "hit_all", "miss_second_half", "hit_second_half")}
    assert counts == {"miss_all": 6, "hit_all": 5, "miss_second_half": 2, "hit_second_half": 3}
    assert c["create_ms_all"] == pytest.approx(6 * 0.3 + 5 * 0.01, abs=0.06)
    assert c["create_ms_second_half"] == pytest.approx(2 * 0.3 + 3 * 0.01, abs=0.06)
    assert c["second_half_s"] == 65 - 3  # from the first update past step 4 (00:03) to 01:05


def _args(**kw):
    d = dict(task="sst2", seed=2, max_steps=240, pattern_from="some/adalora.json")
    return argparse.Namespace(**{**d, **kw})


def test_glue_command_differs_only_in_the_rank_pattern():
    a = bench.glue_command("rank_pattern", _args(), "/tmp/o", "n")
    b = bench.glue_command("uniform", _args(), "/tmp/o", "n")
    i = a.index("--rank-pattern-from")
    assert a[i : i + 2] == ["--rank-pattern-from", "some/adalora.json"]
    assert a[:i] + a[i + 2 :] == b
    assert b[b.index("--max-steps") + 1] == "240"
    assert b[b.index("--precision") + 1] == "bf16"
    assert b[b.index("--group-by-length") + 1] == "yes"


def test_refuses_an_existing_output_and_a_missing_pattern_before_running(tmp_path, capsys):
    out = tmp_path / "b.json"
    out.write_text("{}")
    with pytest.raises(SystemExit) as e:
        bench.main(["--json-out", str(out)])
    assert e.value.code == 2 and "exists" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        bench.main(["--json-out", str(tmp_path / "new.json"), "--pattern-from", "no/such.json"])
    assert e.value.code == 2 and "no such file" in capsys.readouterr().err
    assert out.read_text() == "{}" and not (tmp_path / "new.json").exists()


@pytest.mark.parametrize(
    "flag, value, says",
    [("--arms", "rank_pattern,lora", "unknown arm"), ("--capacities", "1024,big", "entry counts"),
     ("--capacities", "0", "entry counts")],
)  # fmt: skip
def test_refuses_an_unknown_arm_or_capacity_before_running(tmp_path, capsys, flag, value, says):
    out = tmp_path / "b.json"
    with pytest.raises(SystemExit) as e:
        bench.main(["--json-out", str(out), flag, value])
    assert e.value.code == 2 and says in capsys.readouterr().err
    assert not out.exists()
