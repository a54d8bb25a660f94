"""The runner's speed options (bf16 autocast on CPU, length-grouped batches) and the
rank-pattern LoRA baseline (--rank-pattern-from), end to end on a tiny BERT."""

from __future__ import annotations

import json

import pytest

from experiments import glue, glue_task, trainer
from experiments.config import GlueConfig
from tests.test_glue_runner import adapter_flags, flags


def test_bf16_and_grouping_reach_the_trainer(monkeypatch):
    monkeypatch.setattr(trainer, "cpu_has_native_bf16", lambda: True)
    cfg = GlueConfig(batch_size=4, lr=1e-3, weight_decay=0.0, total_step=4, warmup_steps=0,
                     evals=1, precision="bf16", group_by_length=True, seed=1)  # fmt: skip
    args = trainer.training_arguments(cfg, "r", [], 1, False, {})
    assert args.bf16 and not args.fp16
    grouped = getattr(args, "train_sampling_strategy", None) == "group_by_length" or getattr(
        args, "group_by_length", False
    )
    assert grouped


@pytest.mark.parametrize("total, n", [(6315, 6), (690, 6), (2412, 9), (11, 2), (5, 1)])
def test_evals_gives_n_evaluations_the_last_at_T(total, n):
    """--evals N: the scheduled evaluations plus the final one at T are N in all, none a few
    steps before T (floor(T / N) gave N + 1 on SST-2's 6315 steps: at 6312 and 6315)."""
    cfg = GlueConfig(batch_size=4, lr=1e-3, weight_decay=0.0, total_step=total, warmup_steps=0,
                     evals=n, seed=1)  # fmt: skip
    every = trainer.training_arguments(cfg, "r", [], 1, False, {}).eval_steps
    scheduled = list(range(every, total + 1, every))
    steps = scheduled + ([total] if not scheduled or scheduled[-1] != total else [])
    assert len(steps) == n and steps[-1] == total
    if n > 1:
        assert total - steps[-2] >= every / 2


def test_preset_bf16_without_native_bf16_trains_in_fp32_and_says_so(monkeypatch, capsys):
    monkeypatch.setattr(trainer, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert trainer.resolve_precision("bf16", given=False) == "fp32"
    assert "no native bf16" in capsys.readouterr().err
    assert trainer.resolve_precision("fp32", given=True) == "fp32"


def test_given_bf16_without_native_bf16_is_refused_before_loading(
    bert_dir, glue_dir, tmp_path, monkeypatch, capsys
):
    """--precision bf16 on a CPU that would emulate it: one line naming the flag and the fix,
    before the model loads and before anything is written (the grid once got fp32 runs from
    bf16 commands this way, with only a note in their logs)."""
    from tests.test_glue_runner import error_line

    monkeypatch.setattr(trainer, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    loaded = []
    monkeypatch.setattr(glue_task, "load_pretrained", lambda *a, **k: loaded.append(a))
    out = tmp_path / "out"
    line = error_line(capsys, flags(bert_dir, glue_dir, out, "x", "rte", "lora", 4,
                                    "--precision", "bf16"))  # fmt: skip
    assert line.startswith("glue.py: error: --precision bf16: this CPU has no native bf16")
    assert "pass --precision fp32" in line and "a GPU of compute capability 8.0" in line
    assert not loaded and not out.exists()
    with pytest.raises(ValueError, match="--precision fp16: needs a CUDA GPU"):
        trainer.resolve_precision("fp16", given=True)


def test_bf16_on_a_gpu_without_native_bf16(monkeypatch, capsys):
    """A pre-Ampere GPU emulates bf16 too: a given --precision bf16 is refused, a preset's trains
    in fp32 with a note; fp16 and a GPU with native bf16 pass."""
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.get_device_name", lambda *a: "Tesla V100")
    monkeypatch.setattr("torch.cuda.is_bf16_supported", lambda including_emulation=True: False)
    with pytest.raises(ValueError, match=r"this GPU \(Tesla V100\) has no native bf16"):
        trainer.resolve_precision("bf16", given=True)
    assert trainer.resolve_precision("bf16", given=False) == "fp32"
    assert "Tesla V100" in capsys.readouterr().err
    assert trainer.resolve_precision("fp16", given=True) == "fp16"
    monkeypatch.setattr("torch.cuda.is_bf16_supported", lambda including_emulation=True: True)
    assert trainer.resolve_precision("bf16", given=True) == "bf16"


def test_bf16_run_records_the_precision_used(bert_dir, glue_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "cpu_has_native_bf16", lambda: True)
    extra = ("--precision", "bf16", "--group-by-length", "yes", *adapter_flags())
    rec = glue.main(flags(bert_dir, glue_dir, tmp_path, "bf16", "rte", "adalora", 4, *extra))
    hp = rec["hyperparameters"]
    assert rec["status"] == "ok" and hp["precision_used"] == "bf16" and hp["group_by_length"]


def test_rank_pattern_lora_takes_adalora_final_ranks(bert_dir, glue_dir, tmp_path):
    ada = glue.main(flags(bert_dir, glue_dir, tmp_path, "ada", "rte", "adalora", 6,
                          *adapter_flags()))  # fmt: skip
    ranks = ada["rank_pattern"]
    src = tmp_path / "ada.json"
    extra = ("--rank-pattern-from", str(src), *adapter_flags())
    rec = glue.main(flags(bert_dir, glue_dir, tmp_path, "rp", "rte", "lora", 4, *extra))
    kept = {m: r for m, r in ranks.items() if r > 0}
    assert rec["variant"] == "rank_pattern"
    assert rec["rank_pattern"] == kept  # fixed ranks: AdaLoRA's, rank-0 modules unadapted
    assert (
        rec["budget"]["final_total_rank"] == sum(kept.values()) == ada["budget"]["final_total_rank"]
    )
    assert rec["hyperparameters"]["rank_pattern_from"] == str(src)
    # every module at LoRA's scale lora_alpha / lora_r, whatever its own rank
    r = rec["hyperparameters"]["lora_r"]
    assert r == 2 and json.loads(src.read_text())["method"] == "adalora"


@pytest.mark.parametrize(
    "content, problem",
    [("{not json", "cannot read"), (json.dumps({"method": "lora", "rank_pattern": {"a": 1}}),
                                    "not an AdaLoRA result")],
)  # fmt: skip
def test_rank_pattern_from_bad_files(tmp_path, content, problem):
    from experiments.methods import rank_pattern_from

    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(ValueError, match=problem):
        rank_pattern_from(str(bad))
    good = {"method": "adalora", "model": "other", "rank_pattern": {"a": 2, "b": 0}}
    bad.write_text(json.dumps(good))
    assert rank_pattern_from(str(bad)) == {"a": 2}
    with pytest.raises(ValueError, match="same model"):
        rank_pattern_from(str(bad), model="minilm")
