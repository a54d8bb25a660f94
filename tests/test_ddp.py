"""2-process DistributedDataParallel (gloo, CPU) run: both ranks end with the same masks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo")
def test_ddp_two_ranks_agree(tmp_path):
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    )
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(ROOT / "tests" / "ddp_worker.py"),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{i}.json").read_text()) for i in (0, 1))
    assert (r0["rank"], r1["rank"], r0["world"]) == (0, 1, 2)
    assert r0["losses"] != r1["losses"]  # each rank saw its own data
    assert r0["mask"] == r1["mask"]
    assert r0["patterns"] == r1["patterns"]
    assert r0["final_ranks"] == r1["final_ranks"]
    assert r0["lambda"] == r1["lambda"]  # synced init + all-reduced gradients
    assert r0["masks"] == r1["masks"]  # at every step
    assert r0["scores"] == r1["scores"]  # bit for bit: the same all-reduced gradients
    assert any(x > 0 for x in r0["scores"][3])  # scores before the final phase are real
    # non-trivial: masking happened, ranks differ between modules, the budget bT = 24 holds
    assert sum(p is not None for p in r0["patterns"]) >= 5
    ranks = list(r0["final_ranks"].values())
    assert 0 < sum(ranks) <= 24 and len(set(ranks)) > 1
    assert sum(map(sum, r0["mask"])) == sum(ranks)
