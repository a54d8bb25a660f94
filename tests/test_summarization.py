"""experiments/summarization.py end to end on CPU, offline: tiny BART / T5 models built from
their configs with the packaged MiniLM WordPiece tokenizer, a handful of real XSum pairs, every
method, results + predictions files, ROUGE recomputed from the saved predictions, the paper
preset's dry run and the derived Table 3 budget levels."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from experiments import config, summ_models
from experiments import summarization as S
from experiments.data.summarization import split_examples
from experiments.metrics import rouge_scores

SHARED_XSUM = Path(__file__).resolve().parents[2] / "shared" / "data" / "summarization" / "xsum"
N_ROWS = 8  # validation examples in the test data: the first 4 train, the last 3 evaluate


@pytest.fixture(scope="module")
def tok():
    return summ_models.minilm_tokenizer()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A tiny xsum/validation.jsonl: the first real pairs of the shared copy (documents cut to
    their first 400 characters to keep the test fast), else synthetic pairs."""
    d = tmp_path_factory.mktemp("summ") / "xsum"
    d.mkdir()
    src = SHARED_XSUM / "validation.jsonl"
    if src.is_file():
        with open(src, encoding="utf-8") as f:
            rows = [json.loads(next(f)) for _ in range(N_ROWS)]
    else:  # no shared data here: the pipeline is still exercised
        rows = [
            {
                "id": str(i),
                "document": f"The council met on day {i} and approved plan {i} "
                "for the town centre after a long debate.",
                "summary": f"Plan {i} approved.",
            }
            for i in range(N_ROWS)
        ]
    with open(d / "validation.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(
                json.dumps(
                    {"id": r["id"], "document": r["document"][:400], "summary": r["summary"]}
                )
                + "\n"
            )
    return d.parent


@pytest.fixture(scope="module")
def tiny_bart(tmp_path_factory, tok):
    import torch
    from transformers import BartForConditionalGeneration

    torch.manual_seed(0)
    cfg = summ_models.tiny_bart_config(
        tok,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=128,
    )
    path = tmp_path_factory.mktemp("tiny-bart")
    BartForConditionalGeneration(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory, tok):
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    cfg = T5Config(
        vocab_size=len(tok),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=4,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.sep_token_id,
        decoder_start_token_id=tok.pad_token_id,
    )
    path = tmp_path_factory.mktemp("tiny-t5")
    T5ForConditionalGeneration(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def _run(model, data_dir, out, method, name, *extra):
    argv = [
        "--dataset",
        "xsum",
        "--method",
        method,
        "--model",
        model,
        "--data-dir",
        str(data_dir),
        "--output-dir",
        str(out),
        "--run-name",
        name,
        "--wandb",
        "disabled",
        "--seed",
        "0",
        "--max-steps",
        "2",
        "--num-beams",
        "2",
        "--max-train-samples",
        "4",
        "--max-eval-samples",
        "3",
        "--max-length",
        "64",
        "--max-target-length",
        "16",
        "--batch-size",
        "2",
        "--eval-batch-size",
        "3",
        *extra,
    ]
    return S.main(argv)


def _check_run(rec, out, name, data_dir):
    path = out / f"{name}.json"
    assert path.is_file()
    saved = json.loads(path.read_text())
    assert saved["kind"] == "summarization" and saved["task"] == "xsum"
    assert (
        saved["status"] == "ok" and saved["n_train"] == 4 and saved["n_eval"] == {"validation": 3}
    )
    hp = saved["hyperparameters"]
    assert (
        "disjoint" in hp["data_note"]
        and "[0, 4)" in hp["data_note"]
        and "[5, 8)" in hp["data_note"]
    )
    assert hp["generation"]["num_beams"] == 2 and hp["generation"]["max_length"] == 16
    m = saved["metrics"]
    assert m["main"] == "rougeL" and m["primary_split"] == "validation"
    # predictions next to the result, the last 3 examples of the split, in order
    preds = S.read_predictions(S.predictions_path(path))
    rows = [json.loads(line) for line in (data_dir / "xsum" / "validation.jsonl").open()]
    assert [p["id"] for p in preds] == [r["id"] for r in rows[-3:]]
    assert [p["reference"] for p in preds] == [r["summary"] for r in rows[-3:]]
    assert all(set(p) == {"id", "split", "prediction", "reference"} for p in preds)
    # the record's ROUGE is the ROUGE of the saved predictions
    again = rouge_scores([p["prediction"] for p in preds], [p["reference"] for p in preds])
    final = m["final"]["validation"]
    for k in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        assert 0.0 <= final[k] <= 1.0
        assert math.isclose(final[k], again[k], rel_tol=1e-9, abs_tol=1e-12), k
    assert m["main_final"] == final["rougeL"]
    assert "experiments/summarization.py --dataset xsum --method" in saved["command"]
    assert not list(out.glob(".*.tmp"))  # no temp files left behind
    return saved


@pytest.mark.parametrize("method", ["adalora", "lora", "full", "bitfit"])
def test_bart_methods_end_to_end(method, tiny_bart, data_dir, tmp_path):
    rec = _run(tiny_bart, data_dir, tmp_path, method, f"bart-{method}")
    saved = _check_run(rec, tmp_path, f"bart-{method}", data_dir)
    assert saved["model_type"] == "bart"
    if method in ("adalora", "lora"):
        # 1 encoder layer x 6 + 1 decoder layer x 10 (self + cross attention) matrices
        assert saved["budget"]["n_modules"] == 16
        assert saved["budget"]["target_total_rank"] == 8 * 16
    else:
        assert saved["budget"] is None
    if method == "adalora":
        assert saved["rank_pattern"] and len(saved["rank_pattern"]) == 16


def test_t5_adalora_end_to_end(tiny_t5, data_dir, tmp_path):
    rec = _run(tiny_t5, data_dir, tmp_path, "adalora", "t5-adalora", "--target-r", "2")
    saved = _check_run(rec, tmp_path, "t5-adalora", data_dir)
    assert saved["model_type"] == "t5"
    assert saved["hyperparameters"]["source_prefix"] == "summarize: "
    assert saved["budget"]["n_modules"] == 16  # q,k,v,o,wi,wo + self/cross q,k,v,o,wi,wo


def test_results_never_overwritten(tiny_bart, data_dir, tmp_path, capsys):
    _run(tiny_bart, data_dir, tmp_path, "bitfit", "same")
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:  # one line naming --run-name, exit status 2
        _run(tiny_bart, data_dir, tmp_path, "bitfit", "same")
    assert e.value.code == 2 and "--run-name same" in capsys.readouterr().err


def _dry(capsys, *argv) -> dict:
    capsys.readouterr()
    assert S.main(["--dry-run", *argv]) is None
    out = capsys.readouterr().out
    return json.loads(out[out.index("{") :])


def test_paper_dry_run_xsum(capsys, tmp_path):
    cfg = _dry(
        capsys,
        "--preset",
        "paper",
        "--dataset",
        "xsum",
        "--method",
        "adalora",
        "--output-dir",
        str(tmp_path),
    )
    expect = {
        "model": "facebook/bart-large",
        "task": "xsum",
        "init_r": 12,
        "target_r": 8,
        "lora_alpha": 32,
        "lr": 5e-4,
        "batch_size": 64,
        "epochs": 25,
        "tinit": 6000,
        "tfinal": 25000,
        "delta_t": 100,
        "warmup": 3000,
        "max_length": 768,
        "max_target_length": 64,
        "num_beams": 8,
        "orth_reg_weight": 0.1,
        "beta1": 0.85,
        "beta2": 0.85,
        "target_modules": None,
        "train_split": "train",
        "eval_split": "validation",
        "evals": 25,
    }
    assert {k: cfg[k] for k in expect} == expect
    if "budget" not in cfg.get("unresolved", {}):  # BART-large: 192 adapted matrices
        assert cfg["budget"] == 8 * 192
    assert not list(tmp_path.iterdir())  # a dry run writes nothing


def test_paper_dry_run_cnndm_via_task_alias(capsys, tmp_path):
    cfg = _dry(
        capsys,
        "--preset",
        "paper",
        "--task",
        "cnn_dailymail",
        "--method",
        "lora",
        "--output-dir",
        str(tmp_path),
    )
    expect = {
        "task": "cnn_dailymail",
        "init_r": 4,
        "target_r": 2,
        "batch_size": 32,
        "epochs": 15,
        "tinit": 5000,
        "tfinal": 85000,
        "max_length": 1024,
        "max_target_length": 160,
        "num_beams": 4,
    }
    assert {k: cfg[k] for k in expect} == expect
    if "budget" not in cfg.get("unresolved", {}):
        assert cfg["lora_r"] == 2


def test_budget_levels_bart_large():
    """The derived ranks of Table 3's levels: BART-large from its config, no weights."""
    got = {
        lv: summ_models.derive_level_rank(float(lv), "facebook/bart-large")
        for lv in S.BUDGET_LEVELS
    }
    assert {d["n_params"] for d in got.values()} == {406_291_456}
    assert {d["n_modules"] for d in got.values()} == {192}
    assert {d["params_per_rank"] for d in got.values()} == {540_864}
    assert {lv: round(d["target_r"] * 192) for lv, d in got.items()} == {
        "2.20": 3173,
        "1.10": 1587,
        "0.26": 375,
        "0.13": 187,
    }
    for lv, d in got.items():  # the level is the share of AdaLoRA's final adapter parameters
        assert math.isclose(d["target_r"] * 540_864 / 406_291_456 * 100, float(lv))


def test_budget_level_flag(capsys, tmp_path):
    cfg = _dry(
        capsys,
        "--preset",
        "paper",
        "--dataset",
        "xsum",
        "--budget-level",
        "2.20",
        "--output-dir",
        str(tmp_path),
    )
    assert cfg["budget_level"] == 2.2 and cfg["target_r"] == pytest.approx(16.5262, abs=1e-4)
    assert "derived" in cfg["budget_level_note"]
    if "budget" not in cfg.get("unresolved", {}):
        assert cfg["init_r"] == 25 and cfg["budget"] == 3173  # ceil(1.5 x 16.53)
    with pytest.raises(SystemExit):
        S.main(["--preset", "paper", "--budget-level", "1.10", "--target-r", "4", "--dry-run"])


def test_split_examples(data_dir):
    hp = {"max_train_samples": None, "max_eval_samples": 3, "train_split": None, "eval_split": None}
    tr, ev, note = split_examples("xsum", hp, str(data_dir))
    assert len(tr) == N_ROWS - 3 and len(ev) == 3
    assert not {r["id"] for r in tr} & {r["id"] for r in ev}
    assert "validation" in note and "disjoint" in note
    # two different splits: first N of each, nothing shared
    shutil.copy(data_dir / "xsum" / "validation.jsonl", data_dir / "xsum" / "test.jsonl")
    try:
        tr, ev, note = split_examples(
            "xsum",
            {**hp, "max_train_samples": 2, "train_split": "validation", "eval_split": "test"},
            str(data_dir),
        )
        assert len(tr) == 2 and len(ev) == 3 and "first 3 of test" in note
    finally:
        (data_dir / "xsum" / "test.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="train.jsonl"):
        split_examples("xsum", {**hp, "train_split": "train"}, str(data_dir))


def test_glue_parser_unchanged():
    p = config.build_parser(config.GlueConfig, "glue")
    args = p.parse_args(["--task", "cola"])
    assert args.task == "cola" and not hasattr(args, "num_beams")
    with pytest.raises(SystemExit):
        p.parse_args(["--dataset", "xsum"])


def test_adapter_layers_expose_base_weight():
    """T5 reads ``self.wo.weight.dtype`` inside forward: wrapped layers must pass it through."""
    from torch import nn

    from adalora.layers import LoraLinear, SVDLinear

    base = nn.Linear(4, 3)
    for layer in (
        SVDLinear(base, r=2, lora_alpha=2, dropout=0.0),
        LoraLinear(nn.Linear(4, 3), r=2, lora_alpha=2, dropout=0.0),
    ):
        assert layer.weight is layer.base_layer.weight and layer.bias is layer.base_layer.bias


def test_help(capsys):
    with pytest.raises(SystemExit) as e:
        S.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in (
        "--dataset",
        "--budget-level",
        "--num-beams",
        "--length-penalty",
        "--no-repeat-ngram-size",
        "--gen-max-length",
        "--max-target-length",
        "--train-split",
        "--eval-split",
        "--lora-alpha",
    ):
        assert flag in out
