"""summarization.py's lengths and data sizes and --rank-pattern-from (both runners) refuse bad
input in one exact line (experiments/validation/inputs.py, methods.read_rank_pattern /
check_rank_pattern, data/summarization.py's whole-file read): exit status 2, nothing written to
--output-dir. A table run in-process (the default tiny BART, a tiny BERT), a few cases as the
real command, and the valid runs these checks must let through unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import summarization
from experiments.data.summarization import load_summarization
from experiments.methods import rank_pattern_from, read_rank_pattern, run_failure
from tests.helpers import save_tiny_model, write_glue_dir
from tests.test_validation import assert_one_line, glue_argv, run_bad, summ_argv

ROOT = Path(__file__).resolve().parents[1]
ROWS = [{"document": f"doc {i} the cat sat on the mat", "summary": f"sum {i}", "id": i}
        for i in range(12)]  # fmt: skip
GOOD = "".join(json.dumps(r) + "\n" for r in ROWS)
BAD_BYTE = len(GOOD.encode()) + len('{"document": "')  # the 0xff after the good lines
LAYER0 = "bert.encoder.layer.0"
BERT_RANKS = {
    f"bert.encoder.layer.{i}.{m}": 1 + (i + j) % 3
    for i in range(2)
    for j, m in enumerate(
        ["attention.self.query", "attention.self.key", "attention.self.value",
         "attention.output.dense", "intermediate.dense", "output.dense"]
    )
}  # fmt: skip


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Data folders (xsum: 12 good examples a split, then broken lines past a limit), a tiny
    BERT with GLUE data, a tiny BART whose generation config asks for 10 tokens at least, and
    rank-pattern result files good and bad."""
    root = tmp_path_factory.mktemp("inputs")
    summ = {  # name -> {split: text}
        "one-split": {"validation": GOOD},
        "two-splits": {"train": GOOD, "validation": GOOD},
        "bad-json-late": {"train": GOOD + '{"document": "a",\n', "validation": GOOD},
        "null-id-late": {"train": GOOD + '{"document": "a", "summary": "b", "id": null}\n',
                         "validation": GOOD},
        "bool-id": {"train": GOOD, "validation": '{"document": "a", "summary": "b", "id": true}\n'},
        "not-utf8-late": {"train": GOOD.encode() + b'{"document": "\xff", "summary": "b", '
                          b'"id": 1}\n', "validation": GOOD},
    }  # fmt: skip
    for name, splits in summ.items():
        for split, text in splits.items():
            _write(root / "summ" / name / "xsum" / f"{split}.jsonl", text)
    bert = save_tiny_model(root / "tiny-bert")  # hidden 32, intermediate 64
    glue_dir = write_glue_dir(root / "glue", tasks=["rte"], n_train=16, n_eval=8)
    bart = root / "tiny-bart-min10"
    _save_tiny_bart(bart, min_length=10)
    ada = {"schema": "adalora.result/1", "method": "adalora", "model": str(bert),
           "rank_pattern": BERT_RANKS}  # fmt: skip
    rp = {
        "good": ada,
        "unknown": {**ada, "rank_pattern": {**BERT_RANKS, "bert.encoder.layer.9.nosuch": 2}},
        "float": {**ada, "rank_pattern": {**BERT_RANKS, f"{LAYER0}.output.dense": 2.5}},
        "text": {**ada, "rank_pattern": {**BERT_RANKS, f"{LAYER0}.output.dense": "2"}},
        "bool": {**ada, "rank_pattern": {**BERT_RANKS, f"{LAYER0}.output.dense": True}},
        "negative": {**ada, "rank_pattern": {**BERT_RANKS, f"{LAYER0}.output.dense": -1}},
        "list": {**ada, "rank_pattern": list(BERT_RANKS.values())},
        "huge": {**ada, "rank_pattern": {**BERT_RANKS, f"{LAYER0}.output.dense": 40}},
        "layernorm": {**ada, "rank_pattern": {**BERT_RANKS, f"{LAYER0}.output.LayerNorm": 1}},
        "head": {**ada, "rank_pattern": {**BERT_RANKS, "classifier": 1}},
        "all-zero": {**ada, "rank_pattern": dict.fromkeys(BERT_RANKS, 0)},
        "lora-run": {**ada, "method": "lora"},
        # failed runs, as the runner records them (experiments/record.py)
        "nan-loss": {
            **ada,
            "status": "diverged",
            "train_log": [{"loss": 0.7, "step": 50}, {"loss": float("nan"), "step": 100}],
        },
        "diverged": {**ada, "status": "diverged", "train_log": [{"loss": 0.7, "step": 50}]},
        "constant": {
            **ada,
            "status": "constant",
            "train_log": [{"loss": 0.7, "step": 50}],
            "metrics": {"main": "pearson", "main_final": float("nan")},
        },
        "diverged-bart": {**ada, "model": "tiny-bart", "status": "diverged"},
        "weak-but-ok": {
            **ada,
            "status": "ok",
            "train_log": [{"loss": 0.7, "step": 50}],
            "metrics": {"main": "accuracy", "main_final": 0.5},
        },
        "other-model": {**ada, "model": "minilm"},
        "array": [ada],
    }
    for name, rec in rp.items():
        _write(root / "rp" / f"{name}.json", json.dumps(rec))
    _write(root / "rp" / "not-json.json", '{"method": "adalora", ')
    return {"root": root, "summ": root / "summ", "bert": bert, "glue": glue_dir, "bart": bart}


def _save_tiny_bart(path: Path, min_length: int) -> None:
    import torch
    from transformers import BartForConditionalGeneration

    from experiments.summ_models import minilm_tokenizer, tiny_bart_config

    tok = minilm_tokenizer()
    torch.manual_seed(0)
    sizes = dict(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                 decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                 max_position_embeddings=128)  # fmt: skip
    cfg = tiny_bart_config(tok, **sizes)
    model = BartForConditionalGeneration(cfg)
    model.generation_config.min_length = min_length
    model.save_pretrained(path)
    tok.save_pretrained(path)


def summ(e, o, *extra, data="one-split"):
    return summ_argv(e, o, *extra, data=e["summ"] / data)


def rp_glue(e, o, name, *extra):
    path = e["root"] / "rp" / f"{name}.json"
    return glue_argv(e, o, "--method", "lora", "--rank-pattern-from", str(path), *extra,
                     model=e["bert"], data=e["glue"])  # fmt: skip


def rp(e, name) -> str:
    return str(e["root"] / "rp" / f"{name}.json")


def data(e, name) -> str:
    return str(e["summ"] / name)


# --------------------------------------------------------------------------- the table
# (id, runner, argv(env, out), the exact error line after "<runner>.py: error: ")
G, S = "glue", "summarization"
NO_ROOM = "leaves no room for a summary token"
EDITED = "pass an unedited result JSON of an adalora run"
OF_THIS = "pass an AdaLoRA result of this model (BertForSequenceClassification)"
INT_RULE = "(a rank is an integer >= 0; 0 = the module stays unadapted)"
BROKEN = ("the ranks it ended with are those of a broken model; pass an adalora run whose status "
          "is 'ok' (rerun this one, e.g. at a smaller --lr)")  # fmt: skip
CASES = [
    # generation and summary lengths: before loading (stage 1), then against the model (2)
    ("gen-max-length-1", S, lambda e, o: summ(e, o, "--gen-max-length", "1"),
     lambda e: f"--gen-max-length 1: {NO_ROOM}: generation fixes 1 of its tokens (the decoder "
               "start token); pass --gen-max-length 2 or more"),
    ("max-target-length-1", S, lambda e, o: summ(e, o, "--max-target-length", "1"),
     lambda e: "--max-target-length 1: is the generation max length (--gen-max-length is "
               f"unset) and {NO_ROOM}: generation fixes 1 of its tokens (the decoder start "
               "token); pass --max-target-length 2 or more"),
    ("gen-max-length-2-forced-eos", S, lambda e, o: summ(e, o, "--gen-max-length", "2"),
     lambda e: f"--gen-max-length 2: {NO_ROOM}: BartForConditionalGeneration's generation "
               "config fixes 2 of its tokens (the decoder start token, the forced end token); "
               "pass --gen-max-length 3 or more"),
    ("max-target-length-2-specials", S, lambda e, o: summ(e, o, "--max-target-length", "2",
                                                          "--gen-max-length", "8"),
     lambda e: "--max-target-length 2: leaves the training summaries no room for a token: the "
               "tokenizer adds 2 special tokens to each ([CLS] [SEP]); pass "
               "--max-target-length 3 or more"),
    ("max-target-length-1-no-truncation", S, lambda e, o: summ(
        e, o, "--max-target-length", "1", "--gen-max-length", "8"),
     lambda e: "--max-target-length 1: leaves the training summaries no room for a token: the "
               "tokenizer adds 2 special tokens to each ([CLS] [SEP]) and does not truncate "
               "below that; pass --max-target-length 3 or more"),
    ("gen-below-min-length", S, lambda e, o: summ(e, o, "--model", str(e["bart"]),
                                                  "--gen-max-length", "6"),
     lambda e: "--gen-max-length 6: below the 10 tokens the model's generation config asks for "
               "at least (min_length / min_new_tokens): generation would be cut before it may "
               "end; pass --gen-max-length 10 or more"),
    ("length-penalty-greedy", S, lambda e, o: summ(e, o, "--num-beams", "1", "--length-penalty",
                                                   "2"),
     lambda e: "--length-penalty 2: has no effect with --num-beams 1 (greedy search): it only "
               "scores beam hypotheses; pass --num-beams 2 or more, or leave --length-penalty "
               "out"),
    # data files: every line, also past the examples kept
    ("data-bad-json-past-limit", S, lambda e, o: summ(e, o, "--max-train-samples", "8",
                                                      data="bad-json-late"),
     lambda e: f"--data-dir {data(e, 'bad-json-late')}: {data(e, 'bad-json-late')}/xsum/"
               "train.jsonl, line 13: invalid JSON (Expecting property name enclosed in double "
               "quotes: line 2 column 1 (char 18)); fix the file, or point --data-dir at a good "
               "copy of the data"),
    ("data-null-id-past-limit", S, lambda e, o: summ(e, o, "--max-train-samples", "8",
                                                     data="null-id-late"),
     lambda e: f"--data-dir {data(e, 'null-id-late')}: {data(e, 'null-id-late')}/xsum/"
               "train.jsonl, line 13: id is null, not a string or an integer; fix the file, or "
               "point --data-dir at a good copy of the data"),
    ("data-bool-id", S, lambda e, o: summ(e, o, data="bool-id"),
     lambda e: f"--data-dir {data(e, 'bool-id')}: {data(e, 'bool-id')}/xsum/validation.jsonl, "
               "line 1: id is true, not a string or an integer; fix the file, or point "
               "--data-dir at a good copy of the data"),
    ("data-not-utf8-past-limit", S, lambda e, o: summ(e, o, "--max-train-samples", "8",
                                                      data="not-utf8-late"),
     lambda e: f"--data-dir {data(e, 'not-utf8-late')}: {data(e, 'not-utf8-late')}/xsum/"
               f"train.jsonl: not UTF-8 text (invalid start byte at byte {BAD_BYTE}); fix the "
               "file, or point --data-dir at a good copy of the data"),
    # split sizes: one split shared by training (first) and evaluation (last examples)
    ("shared-split-eval-too-many", S, lambda e, o: summ(e, o, "--max-eval-samples", "12"),
     lambda e: "--max-eval-samples 12: xsum/validation holds 12 examples and training needs "
               "one batch (--batch-size 8) of them besides the evaluation ones (no separate "
               "train split); pass --max-eval-samples 4 or less, or a smaller --batch-size"),
    ("shared-split-train-too-many", S, lambda e, o: summ(e, o, "--max-train-samples", "9"),
     lambda e: "--max-train-samples 9: xsum/validation holds 12 examples, the last 4 of them "
               "for evaluation: 8 remain for training; pass --max-train-samples 8 or less, or "
               "leave it out"),
    ("train-samples-below-batch", S, lambda e, o: summ(e, o, "--max-train-samples", "4"),
     lambda e: "--max-train-samples 4: fewer than one batch (--batch-size 8) to train on; pass "
               "--max-train-samples 8 or more, or a smaller --batch-size"),
    ("shared-split-one-example-left", S, lambda e, o: [
        a for a in summ(e, o) if a not in ("--max-eval-samples", "4")],  # the preset's 100
     lambda e: f"--data-dir {data(e, 'one-split')}: xsum/validation holds 12 examples, the "
               "last 11 of them for evaluation: 1 remain for training, fewer than one batch "
               "(--batch-size 8); pass a smaller --batch-size or --max-eval-samples, or use "
               "more data"),
    ("grad-accum-batch", S, lambda e, o: summ(e, o, "--grad-accum", "2"),
     lambda e: "--max-eval-samples 4: xsum/validation holds 12 examples and training needs one "
               "batch (--batch-size 8 x --grad-accum 2 = 16 examples a step) of them besides "
               "the evaluation ones (no separate train split); pass a smaller --batch-size, or "
               "use more data"),
    # two splits: each the first --max-*-samples of its own
    ("two-splits-eval-too-many", S, lambda e, o: summ(
        e, o, "--max-eval-samples", "20", data="two-splits"),
     lambda e: "--max-eval-samples 20: xsum/validation holds only 12 examples; pass "
               "--max-eval-samples 12 or less, or leave it out"),
    ("two-splits-train-too-many", S, lambda e, o: summ(
        e, o, "--max-train-samples", "20", data="two-splits"),
     lambda e: "--max-train-samples 20: xsum/train holds 12 examples; pass --max-train-samples "
               "12 or less, or leave it out"),
    ("two-splits-batch-too-big", S, lambda e, o: summ(e, o, "--batch-size", "16",
                                                      data="two-splits"),
     lambda e: "--batch-size 16: xsum/train holds 12 examples, fewer than one batch "
               "(--batch-size 16); pass a smaller --batch-size"),
    # --rank-pattern-from: the file (before loading), then against the model
    ("rp-not-json", G, lambda e, o: rp_glue(e, o, "not-json"),
     lambda e: f"--rank-pattern-from {rp(e, 'not-json')}: cannot read it as a result file "
               "(Expecting property name enclosed in double quotes: line 1 column 23 (char "
               "22)); pass the result JSON of an adalora run"),
    ("rp-array", G, lambda e, o: rp_glue(e, o, "array"),
     lambda e: f"--rank-pattern-from {rp(e, 'array')}: not an AdaLoRA result file (a JSON list, "
               "not an object); pass the result JSON of an adalora run"),
    ("rp-lora-run", G, lambda e, o: rp_glue(e, o, "lora-run"),
     lambda e: f"--rank-pattern-from {rp(e, 'lora-run')}: not an AdaLoRA result file with a "
               "final rank pattern (method 'lora'); pass the result JSON of an adalora run"),
    ("rp-other-model", G, lambda e, o: rp_glue(e, o, "other-model"),
     lambda e: f"--rank-pattern-from {rp(e, 'other-model')}: its ranks are for model 'minilm', "
               f"this run trains '{e['bert']}'; pass an AdaLoRA result of the same model"),
    ("rp-list", G, lambda e, o: rp_glue(e, o, "list"),
     lambda e: f"--rank-pattern-from {rp(e, 'list')}: rank_pattern is a JSON list, not an "
               f"object of module name -> rank; {EDITED}"),
    ("rp-float", G, lambda e, o: rp_glue(e, o, "float"),
     lambda e: f"--rank-pattern-from {rp(e, 'float')}: rank_pattern['{LAYER0}.output.dense'] = "
               f"2.5: not an integer {INT_RULE}; {EDITED}"),
    ("rp-text", G, lambda e, o: rp_glue(e, o, "text"),
     lambda e: f"--rank-pattern-from {rp(e, 'text')}: rank_pattern['{LAYER0}.output.dense'] = "
               f'"2": not an integer {INT_RULE}; {EDITED}'),
    ("rp-bool", G, lambda e, o: rp_glue(e, o, "bool"),
     lambda e: f"--rank-pattern-from {rp(e, 'bool')}: rank_pattern['{LAYER0}.output.dense'] = "
               f"true: not an integer {INT_RULE}; {EDITED}"),
    ("rp-negative", G, lambda e, o: rp_glue(e, o, "negative"),
     lambda e: f"--rank-pattern-from {rp(e, 'negative')}: rank_pattern['{LAYER0}.output.dense']"
               f" = -1: negative {INT_RULE}; {EDITED}"),
    ("rp-all-zero", G, lambda e, o: rp_glue(e, o, "all-zero"),
     lambda e: f"--rank-pattern-from {rp(e, 'all-zero')}: every module of its rank_pattern has "
               "rank 0 (12 modules): nothing to adapt; pass an adalora run that kept some "
               "ranks"),
    ("rp-nan-loss", G, lambda e, o: rp_glue(e, o, "nan-loss"),
     lambda e: f"--rank-pattern-from {rp(e, 'nan-loss')}: the run diverged (its training loss "
               f"became nan at step 100): {BROKEN}"),
    ("rp-diverged", G, lambda e, o: rp_glue(e, o, "diverged"),
     lambda e: f"--rank-pattern-from {rp(e, 'diverged')}: the run diverged (status 'diverged': "
               f"its training loss became nan / inf): {BROKEN}"),
    ("rp-constant", G, lambda e, o: rp_glue(e, o, "constant"),
     lambda e: f"--rank-pattern-from {rp(e, 'constant')}: the run collapsed (its final pearson "
               f"is nan: one prediction for every example; status 'constant'): {BROKEN}"),
    ("rp-summarization-diverged", S, lambda e, o: summ(
        e, o, "--method", "lora", "--rank-pattern-from", rp(e, "diverged-bart")),
     lambda e: f"--rank-pattern-from {rp(e, 'diverged-bart')}: the run diverged (status "
               f"'diverged': its training loss became nan / inf): {BROKEN}"),
    ("rp-with-target-modules", G, lambda e, o: rp_glue(e, o, "good", "--target-modules", "query"),
     lambda e: "--target-modules query: unused with --rank-pattern-from: the rank pattern names "
               "the adapted modules; drop --target-modules (or --rank-pattern-from)"),
    ("rp-unknown-module", G, lambda e, o: rp_glue(e, o, "unknown"),
     lambda e: f"--rank-pattern-from {rp(e, 'unknown')}: module 'bert.encoder.layer.9.nosuch' "
               f"is not in BertForSequenceClassification; {OF_THIS}"),
    ("rp-not-linear", G, lambda e, o: rp_glue(e, o, "layernorm"),
     lambda e: f"--rank-pattern-from {rp(e, 'layernorm')}: module '{LAYER0}.output.LayerNorm' "
               f"is a LayerNorm, not a Linear layer; {OF_THIS}"),
    ("rp-task-head", G, lambda e, o: rp_glue(e, o, "head"),
     lambda e: f"--rank-pattern-from {rp(e, 'head')}: module 'classifier' is the task head "
               f"'classifier', which is trained in full, never adapted; {OF_THIS}"),
    ("rp-rank-above-min-side", G, lambda e, o: rp_glue(e, o, "huge"),
     lambda e: f"--rank-pattern-from {rp(e, 'huge')}: rank 40 of module '{LAYER0}.output.dense' "
               "exceeds 32, the smaller side of its 32 x 64 matrix: a rank above min(in, out) "
               f"cannot be used; {OF_THIS}"),
    ("rp-summarization-other-model", S, lambda e, o: summ(
        e, o, "--method", "lora", "--rank-pattern-from", rp(e, "good")),
     lambda e: f"--rank-pattern-from {rp(e, 'good')}: its ranks are for model '{e['bert']}', "
               "this run trains 'tiny-bart'; pass an AdaLoRA result of the same model"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_exact_line(case, env, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SUMM_DIR", raising=False)
    monkeypatch.delenv("GLUE_DIR", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    _, runner, make, want = case
    out = tmp_path / "out"
    code, err = run_bad(runner, make(env, out), capsys)
    line = assert_one_line(code, err, f"{runner}.py", [])
    assert line == f"{runner}.py: error: {want(env)}"
    assert not out.exists()  # nothing written: no result, predictions, checkpoint or W&B folder
    assert not (tmp_path / "wandb-dir").exists()


def test_the_table_covers_both_runners():
    assert len({c[0] for c in CASES}) == len(CASES) >= 30
    assert {c[1] for c in CASES} == {G, S}


@pytest.mark.parametrize(
    "case", ["gen-max-length-2-forced-eos", "shared-split-one-example-left", "rp-unknown-module"]
)
def test_one_exact_line_from_the_command(case, env, tmp_path):
    """The command itself: stderr is the error line and nothing else, exit status 2."""
    _, runner, make, want = next(c for c in CASES if c[0] == case)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, f"experiments/{runner}.py", *make(env, out)],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "SUMM_DIR"} | {"WANDB_MODE": "disabled"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr == f"{runner}.py: error: {want(env)}\n", proc.stderr[-3000:]
    assert not out.exists()


def test_dry_run_checks_the_rank_pattern_against_the_model(env, tmp_path, capsys):
    """--dry-run loads the model too and refuses the same pattern (after the model's loading
    progress bar, which a dry run shows)."""
    _, runner, make, want = next(c for c in CASES if c[0] == "rp-unknown-module")
    code, err = run_bad(runner, [*make(env, tmp_path / "out"), "--dry-run"], capsys)
    assert code == 2 and err[-1] == f"glue.py: error: {want(env)}"
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- what still passes
def test_whole_file_read_keeps_the_first_examples(env):
    d = env["summ"] / "two-splits"
    rows = load_summarization("xsum", "train", d, limit=3)
    assert [r["id"] for r in rows] == ["0", "1", "2"]
    with pytest.raises(ValueError, match="line 13: id is null"):
        load_summarization("xsum", "train", env["summ"] / "null-id-late", limit=3)


def test_a_preset_cap_above_the_split_is_recorded_not_refused(env, tmp_path, capsys):
    """The quick preset asks for 2000 training examples; a split with fewer gives what it has,
    and the data note says how many (only an explicit --max-train-samples is held to it)."""
    capsys.readouterr()
    summarization.main(summ(env, tmp_path / "out", "--dry-run", data="two-splits"))
    out = capsys.readouterr().out
    view = json.loads(out[out.index("{") :])
    assert view["max_train_samples"] == 2000 and view["n_train"] == 12
    assert "train = first 12 of train, eval = first 4 of validation" in view["data_note"]
    assert not (tmp_path / "out").exists()


def test_read_rank_pattern_keeps_zero_ranks_and_the_run_drops_them(env):
    path = rp(env, "good")
    pattern = {**BERT_RANKS, f"{LAYER0}.output.dense": 0}
    Path(path).with_name("zero.json").write_text(
        json.dumps({"method": "adalora", "model": str(env["bert"]), "rank_pattern": pattern})
    )
    zero = str(Path(path).with_name("zero.json"))
    assert read_rank_pattern(zero, str(env["bert"])) == pattern
    assert rank_pattern_from(zero) == {k: r for k, r in sorted(pattern.items()) if r > 0}


def test_a_weak_but_finished_run_is_accepted(env):
    """Chance-level accuracy is no failure (no threshold tells a weak run from a broken one)."""
    path = rp(env, "weak-but-ok")
    assert read_rank_pattern(path, str(env["bert"])) == BERT_RANKS


def test_every_committed_adalora_result_is_a_usable_rank_pattern():
    """The converged grid's rank-pattern LoRA runs read these files (scripts/plan_converged.py):
    none may be refused as a failed run."""
    paths = sorted((ROOT / "results" / "evidence").rglob("*.json"))
    used = 0
    for path in paths:
        try:
            rec = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(rec, dict) and rec.get("method") == "adalora" and rec.get("rank_pattern"):
            assert run_failure(rec) is None, path
            read_rank_pattern(str(path), rec.get("model"))
            used += 1
    if not used:
        pytest.skip("no committed AdaLoRA results in this checkout")
    converged = [p for p in paths if "converged" in p.parts and "-adalora" in p.name]
    assert used >= len(converged) > 0


def test_rank_pattern_run_on_tiny_bart(env, tmp_path):
    """A summarisation rank-pattern LoRA run: the pattern's ranks (rank 0 unadapted) are what
    the record says."""
    ranks = {
        "model.encoder.layers.0.self_attn.q_proj": 2,
        "model.decoder.layers.1.fc2": 1,
        "model.encoder.layers.1.fc1": 0,
    }
    src = tmp_path / "ada.json"
    src.write_text(json.dumps({"method": "adalora", "model": "tiny-bart", "rank_pattern": ranks}))
    out = tmp_path / "out"
    rec = summarization.main(
        summ(env, out, "--method", "lora", "--rank-pattern-from", str(src), "--num-beams", "1")
        + ["--max-length", "32", "--max-target-length", "8"]
    )
    assert rec["variant"] == "rank_pattern" and rec["status"] == "ok"
    assert rec["rank_pattern"] == {k: r for k, r in ranks.items() if r > 0}
    assert rec["budget"]["final_total_rank"] == 3
    assert (out / "bad-run.json").is_file()
