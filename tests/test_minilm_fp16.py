"""scripts/minilm_fp16.py: a half-size copy of a model folder; bad input is one exact line (exit
status 2, nothing written), and a good folder is copied with its floating tensors in fp16."""

from __future__ import annotations

import json

import pytest

from scripts import minilm_fp16
from tests.helpers import save_tiny_model

# case -> (files made under the test's folder "OUT", argv, the line after "minilm_fp16.py:
# error: "); "OUT/src" is a good model folder.
BAD = {
    "src-missing": (
        [],
        ["--src", "OUT/none", "--out", "OUT/copy"],
        "--src OUT/none: no such folder; pass a model folder with a safetensors checkpoint",
    ),
    "src-without-safetensors": (
        ["empty/config.json"],
        ["--src", "OUT/empty", "--out", "OUT/copy"],
        "--src OUT/empty: no model.safetensors there; pass a model folder with a safetensors "
        "checkpoint",
    ),
    "src-a-file": (
        ["f.txt"],
        ["--src", "OUT/f.txt", "--out", "OUT/copy"],
        "--src OUT/f.txt: not a folder; pass a model folder with a safetensors checkpoint",
    ),
    "out-holds-a-model": (
        ["copy/model.safetensors"],
        ["--src", "OUT/src", "--out", "OUT/copy"],
        "--out OUT/copy: already holds a model.safetensors, which this copy would overwrite; "
        "pass a new folder, or delete that one first",
    ),
    "out-under-a-file": (
        ["f.txt"],
        ["--src", "OUT/src", "--out", "OUT/f.txt/copy"],
        "--out OUT/f.txt/copy: OUT/f.txt is a file, not a folder; pass a folder path",
    ),
}


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("fp16") / "src")


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line(case, src, tmp_path, capsys):
    files, argv, line = BAD[case]
    (tmp_path / "src").symlink_to(src)
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("{}")
    before = sorted(tmp_path.rglob("*"))
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        minilm_fp16.main([a.replace("OUT", str(tmp_path)) for a in argv])
    assert e.value.code == 2 and sorted(tmp_path.rglob("*")) == before
    assert (
        capsys.readouterr().err == f"minilm_fp16.py: error: {line.replace('OUT', str(tmp_path))}\n"
    )


def test_copy_is_fp16_and_loads_as_fp32(src, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "copy"
    assert minilm_fp16.main(["--src", str(src), "--out", str(out)]) == 0
    assert {str(t.dtype) for t in load_file(str(out / "model.safetensors")).values()} <= {
        "torch.float16", "torch.int64"
    }  # fmt: skip
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32"
