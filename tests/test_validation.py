"""Every bad input is a one-line error (experiments/validation/checks.py): exit status 2, one
``<prog>: error: <flag> <value>: <problem>; <fix>`` line on stderr, no traceback, nothing
written. A table of bad flags, config values and data files, run in-process through
``glue.main`` / ``summarization.main`` on a tiny BERT (128 positions, 32-wide matrices) and the
default tiny BART; a few on the packaged MiniLM and the real data when present. Then: the data
folders accepted both ways, "all-linear", and the library's own ValueErrors.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from experiments import glue, summarization
from experiments.config import split_target_modules
from experiments.data.glue import load_glue, task_dir
from experiments.data.summarization import load_summarization, summ_jsonl_path
from tests.helpers import save_tiny_model, write_glue_dir

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_GLUE, REAL_SUMM = SHARED / "glue", SHARED / "summarization"


# --------------------------------------------------------------------------- fixtures
def _tsv(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)


RTE_HEAD = "index\tsentence1\tsentence2\tlabel\n"
RTE_ROW = "0\tthe cat sat\ta dog ran\tentailment\n"
STSB_HEAD = (
    "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
)


def _stsb_row(score: str) -> str:
    return f"0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tthe cat\ta dog\t{score}\n"


# bad data folders: name -> {relative file: content}; the other split files are good copies
BAD_DATA = {
    "empty-file": {"RTE/train.tsv": ""},
    "header-only": {"RTE/train.tsv": RTE_HEAD},
    "missing-column": {"RTE/train.tsv": "index\tsentence1\tsentence2\tgold\n" + RTE_ROW},
    "unknown-label": {"RTE/train.tsv": RTE_HEAD + RTE_ROW + "1\ta b\tc d\tmaybe\n"},
    "comma-separated": {"RTE/train.tsv": "index,sentence1,sentence2,label\n0,a,b,entailment\n"},
    "cola-commas": {"CoLA/train.tsv": "gj04,1,,the cat sat\n"},
    "not-utf8": {"RTE/train.tsv": RTE_HEAD.encode() + b"0\t\xff\xfe bad\tx\tentailment\n"},
    "stsb-text-score": {"STS-B/train.tsv": STSB_HEAD + _stsb_row("3.5") + _stsb_row("high")},
    "stsb-score-range": {"STS-B/train.tsv": STSB_HEAD + _stsb_row("7.0")},
    "no-dev-file": {"RTE/dev.tsv": None},
}
BAD_SUMM = {
    "invalid-json": '{"document": "a", "summary": "b", "id": 1}\n{"document": "a",\n',
    "missing-field": '{"document": "a", "id": 1}\n',
    "not-an-object": "[1, 2, 3]\n",
    "document-not-text": '{"document": 5, "summary": "b", "id": 1}\n',
    "empty-jsonl": "",
}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("validation")
    bert = save_tiny_model(root / "tiny-bert")  # 128 positions, hidden 32
    good = write_glue_dir(root / "glue", tasks=["rte", "stsb", "cola"], n_train=16, n_eval=8)
    bad = {}
    for name, files in BAD_DATA.items():
        d = write_glue_dir(root / "bad" / name, tasks=["rte", "stsb", "cola"], n_train=8, n_eval=4)
        for rel, text in files.items():
            if text is None:
                (d / rel).unlink()
            else:
                _tsv(d / rel, text)
        bad[name] = d
    rows = [{"document": f"doc {i} the cat", "summary": f"sum {i}", "id": i} for i in range(12)]
    summ = root / "summ"
    (summ / "xsum").mkdir(parents=True)
    (summ / "xsum" / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name, text in BAD_SUMM.items():
        (root / "badsumm" / name / "xsum").mkdir(parents=True)
        (root / "badsumm" / name / "xsum" / "validation.jsonl").write_text(text)
    # a complete checkpoint made with other settings
    ck = root / "ckpt-out" / "checkpoints" / "other" / "checkpoint-2"
    ck.mkdir(parents=True)
    (ck / "trainer_state.json").write_text("{}")
    (ck / "model.safetensors").write_bytes(b"")
    (ck.parent / "run.json").write_text(json.dumps({"task": "rte", "hp": {"lr": 1.0}}))
    (root / "a-file").write_text("not a folder")
    (root / "adalora-result.json").write_text(json.dumps({"method": "lora", "rank_pattern": {}}))
    return {"root": root, "bert": bert, "glue": good, "bad": bad, "summ": summ}


def glue_argv(env, out, *extra, task="rte", data=None, model=None, name="bad-run") -> list:
    return [
        "--task", task,
        "--model", str(model or env["bert"]),
        "--data-dir", str(data or env["glue"]),
        "--output-dir", str(out),
        "--run-name", name,
        "--max-steps", "4",
        "--batch-size", "4",
        "--max-length", "32",
        "--wandb", "disabled",
        *extra,
    ]  # fmt: skip


def summ_argv(env, out, *extra, data=None, name="bad-run") -> list:
    return [
        "--dataset", "xsum",
        "--data-dir", str(data or env["summ"]),
        "--output-dir", str(out),
        "--run-name", name,
        "--max-steps", "2",
        "--max-eval-samples", "4",
        "--wandb", "disabled",
        *extra,
    ]  # fmt: skip


# --------------------------------------------------------------------------- the table
# (id, runner, argv(env, out) -> list, substrings the error line must hold)
G, S = "glue", "summarization"
CASES = [
    # sizes and counts
    ("batch-size-0", G, lambda e, o: glue_argv(e, o, "--batch-size", "0"),
     ["--batch-size 0:", "positive integer"]),
    ("eval-batch-size-0", G, lambda e, o: glue_argv(e, o, "--eval-batch-size", "0"),
     ["--eval-batch-size 0:", "positive integer"]),
    ("grad-accum-0", G, lambda e, o: glue_argv(e, o, "--grad-accum", "0"),
     ["--grad-accum 0:", "positive integer"]),
    ("evals-0", G, lambda e, o: glue_argv(e, o, "--evals", "0"), ["--evals 0:", "positive"]),
    ("max-steps-0", G, lambda e, o: glue_argv(e, o, "--max-steps", "0"),
     ["--max-steps 0:", "positive integer"]),
    ("epochs-0", G, lambda e, o: glue_argv(e, o, "--epochs", "0"), ["--epochs 0:", "> 0"]),
    ("max-train-samples-0", G, lambda e, o: glue_argv(e, o, "--max-train-samples", "0"),
     ["--max-train-samples 0:", "positive integer"]),
    ("max-eval-samples-neg", G, lambda e, o: glue_argv(e, o, "--max-eval-samples", "-3"),
     ["--max-eval-samples -3:", "positive integer"]),
    ("max-length-1", G, lambda e, o: glue_argv(e, o, "--max-length", "1"),
     ["--max-length 1:", "integer >= 8"]),
    ("save-steps-0", G, lambda e, o: glue_argv(e, o, "--save-steps", "0"),
     ["--save-steps 0:", "positive integer"]),
    ("num-beams-0", S, lambda e, o: summ_argv(e, o, "--num-beams", "0"),
     ["--num-beams 0:", "positive integer"]),
    # learning rate, fractions and coefficients
    ("lr-negative", G, lambda e, o: glue_argv(e, o, "--lr", "-1"), ["--lr -1:", "> 0"]),
    ("lr-zero", G, lambda e, o: glue_argv(e, o, "--lr", "0"), ["--lr 0:", "> 0"]),
    ("lr-nan", G, lambda e, o: glue_argv(e, o, "--lr", "nan"), ["--lr nan:", "> 0"]),
    ("lora-dropout-1.5", G, lambda e, o: glue_argv(e, o, "--lora-dropout", "1.5"),
     ["--lora-dropout 1.5:", "[0, 1)"]),
    ("cls-dropout-neg", G, lambda e, o: glue_argv(e, o, "--cls-dropout", "-0.1"),
     ["--cls-dropout -0.1:", "[0, 1)"]),
    ("warmup-neg", G, lambda e, o: glue_argv(e, o, "--warmup", "-5"), ["--warmup -5:", ">= 0"]),
    ("beta1-one", G, lambda e, o: glue_argv(e, o, "--beta1", "1"), ["--beta1 1:", "(0, 1)"]),
    ("beta2-zero", G, lambda e, o: glue_argv(e, o, "--beta2", "0"), ["--beta2 0:", "(0, 1)"]),
    ("weight-decay-neg", G, lambda e, o: glue_argv(e, o, "--weight-decay", "-0.01"),
     ["--weight-decay -0.01:", ">= 0"]),
    ("orth-reg-neg", G, lambda e, o: glue_argv(e, o, "--orth-reg-weight", "-1"),
     ["--orth-reg-weight -1:", ">= 0"]),
    ("lora-alpha-0", G, lambda e, o: glue_argv(e, o, "--lora-alpha", "0"),
     ["--lora-alpha 0:", "> 0"]),
    ("tinit-frac-1.2", G, lambda e, o: glue_argv(e, o, "--tinit-frac", "1.2"),
     ["--tinit-frac 1.2:", "[0, 1)"]),
    ("fractions-sum", G, lambda e, o: glue_argv(e, o, "--tinit-frac", "0.6", "--tfinal-frac",
                                                "0.5"), ["--tfinal-frac 0.5:", "no budgeting"]),
    ("seed-neg", G, lambda e, o: glue_argv(e, o, "--seed", "-1"), ["--seed -1:", "2^32"]),
    ("sweep-json", G, lambda e, o: glue_argv(e, o, "--sweep-json", "{bad"),
     ["--sweep-json", "not JSON"]),
    # ranks and schedule
    ("budget-huge", G, lambda e, o: glue_argv(e, o, "--budget", "100000"),
     ["--budget 100000:", "exceeds 32", "min(in, out)", "pass --budget"]),
    ("init-r-huge", G, lambda e, o: glue_argv(e, o, "--init-r", "64", "--target-r", "2"),
     ["--init-r 64:", "exceeds 32", "pass --init-r 32 or less"]),
    ("target-r-huge", G, lambda e, o: glue_argv(e, o, "--target-r", "40"),
     ["--target-r 40:", "exceeds 32"]),
    ("lora-r-huge", G, lambda e, o: glue_argv(e, o, "--method", "lora", "--lora-r", "64"),
     ["--lora-r 64:", "lora_r 64 exceeds 32"]),
    ("target-above-init", G, lambda e, o: glue_argv(e, o, "--target-r", "20", "--init-r", "3"),
     ["--target-r 20:", "> init_r 3"]),
    ("budget-above-init", G, lambda e, o: glue_argv(e, o, "--budget", "300", "--init-r", "3"),
     ["--budget 300:", "> init_r 3", "pass --budget 36 or less"]),
    ("delta-t-0", G, lambda e, o: glue_argv(e, o, "--delta-t", "0"),
     ["--delta-t 0:", "positive integer"]),
    ("schedule-impossible", G, lambda e, o: glue_argv(e, o, "--max-steps", "6", "--tinit", "3",
                                                      "--tfinal", "3"),
     ["--tinit 3:", "no budgeting phase", ">= T = 6"]),
    ("schedule-vs-epochs", G, lambda e, o: _without_max_steps(glue_argv(
        e, o, "--tinit", "3", "--tfinal", "3", "--epochs", "1")),
     ["--tinit 3:", ">= T = 4 steps"]),  # 16 examples / batch 4: T = 4 (known from the data)
    ("target-module-unknown", G, lambda e, o: glue_argv(e, o, "--target-modules", "nosuch"),
     ["--target-modules nosuch:", "matched no Linear layer"]),
    ("target-module-typo", G, lambda e, o: glue_argv(e, o, "--target-modules", "query,vaule"),
     ["--target-modules query,vaule:", "'vaule' matches no Linear layer"]),
    ("target-module-regex", G, lambda e, o: glue_argv(e, o, "--target-modules", "(query"),
     ["--target-modules (query:", "not a valid regex"]),
    ("max-length-positions", G, lambda e, o: glue_argv(e, o, "--max-length", "200"),
     ["--max-length 200:", "128 positions", "pass --max-length 128 or less"]),
    ("summ-max-length", S, lambda e, o: summ_argv(e, o, "--max-length", "2000"),
     ["--max-length 2000:", "1024 positions"]),
    ("summ-target-length", S, lambda e, o: summ_argv(e, o, "--max-target-length", "5000"),
     ["--max-target-length 5000:", "1024 positions"]),
    ("budget-level-and-target-r", S, lambda e, o: summ_argv(e, o, "--budget-level", "1.10",
                                                            "--target-r", "4"),
     ["--budget-level 1.10:", "not both"]),
    # precision, paths, names, resume
    ("fp16-on-cpu", G, lambda e, o: glue_argv(e, o, "--precision", "fp16"),
     ["--precision fp16:", "CUDA"]),
    ("data-dir-missing", G, lambda e, o: glue_argv(e, o, data=e["root"] / "nowhere"),
     ["--data-dir", "nowhere: no such folder"]),
    ("data-dir-is-file", S, lambda e, o: summ_argv(e, o, data=e["root"] / "a-file"),
     ["--data-dir", "a-file: not a folder"]),
    ("output-dir-under-file", G, lambda e, o: glue_argv(e, e["root"] / "a-file" / "out"),
     ["--output-dir", "is a file, not a folder"]),
    ("output-dir-unwritable", G, lambda e, o: glue_argv(e, "/proc/adalora-out"),
     ["--output-dir /proc/adalora-out:", "cannot write"]),
    ("run-name-exists", G, lambda e, o: glue_argv(e, _with_result(o, "taken"), name="taken"),
     ["--run-name taken:", "already exists", "never overwritten"]),
    ("run-name-path", G, lambda e, o: glue_argv(e, o, name="a/b"),
     ["--run-name 'a/b':", "plain file name"]),
    ("resume-nothing", G, lambda e, o: glue_argv(e, o, "--resume"),
     ["--resume:", "no complete checkpoint of run bad-run"]),
    ("resume-other-settings", G, lambda e, o: glue_argv(e, e["root"] / "ckpt-out", name="other"),
     ["--run-name other:", "other settings"]),
    ("model-missing", G, lambda e, o: glue_argv(e, o, model="/nonexistent/model"),
     ["--model /nonexistent/model:", "no such folder"]),
    ("model-not-a-model", G, lambda e, o: glue_argv(e, o, model=e["root"] / "glue"),
     ["--model", "cannot load it"]),
    ("rank-pattern-not-lora", G, lambda e, o: glue_argv(
        e, o, "--rank-pattern-from", str(e["root"] / "adalora-result.json")),
     ["--rank-pattern-from", "only for --method lora"]),
    ("rank-pattern-no-file", G, lambda e, o: glue_argv(
        e, o, "--method", "lora", "--rank-pattern-from", str(e["root"] / "none.json")),
     ["--rank-pattern-from", "no such file"]),
    ("rank-pattern-not-adalora", G, lambda e, o: glue_argv(
        e, o, "--method", "lora", "--rank-pattern-from", str(e["root"] / "adalora-result.json")),
     ["--rank-pattern-from", "not an AdaLoRA result file"]),
    # argparse's own errors, on one line too
    ("batch-size-text", G, lambda e, o: glue_argv(e, o, "--batch-size", "x"),
     ["--batch-size", "invalid int value: 'x'"]),
    ("method-unknown", G, lambda e, o: glue_argv(e, o, "--method", "qlora"),
     ["--method", "invalid choice: 'qlora'"]),
    # data files
    *[
        (f"data-{name}", G, (lambda n: lambda e, o: glue_argv(
            e, o, task="cola" if "cola" in n else "stsb" if "stsb" in n else "rte",
            data=e["bad"][n]))(name), ["--data-dir", *want])
        for name, want in {
            "empty-file": ["RTE/train.tsv: empty file"],
            "header-only": ["RTE/train.tsv: no examples"],
            "missing-column": ["header has no column 'label'"],
            "unknown-label": ["row 3: label 'maybe' is not one of"],
            "comma-separated": ["no column 'sentence1'", "tab-separated"],
            "cola-commas": ["CoLA/train.tsv, row 1: 1 fields", "tab-separated"],
            "not-utf8": ["RTE/train.tsv: not UTF-8"],
            "stsb-text-score": ["STS-B/train.tsv, row 3: label 'high' is not a number"],
            "stsb-score-range": ["score '7.0' is outside STS-B's [0, 5]"],
            "no-dev-file": ["GLUE file not found", "RTE/dev.tsv"],
        }.items()
    ],
    *[
        (f"summ-{name}", S, (lambda n: lambda e, o: summ_argv(
            e, o, data=e["root"] / "badsumm" / n))(name), ["--data-dir", "validation.jsonl", want])
        for name, want in {
            "invalid-json": "line 2: invalid JSON",
            "missing-field": "line 1: missing field(s) ['summary']",
            "not-an-object": "line 1: not a JSON object",
            "document-not-text": "document is int, not text",
            "empty-jsonl": "no examples",
        }.items()
    ],
]  # fmt: skip


def _without_max_steps(argv: list) -> list:
    i = argv.index("--max-steps")
    return argv[:i] + argv[i + 2 :]


def _with_result(out: Path, name: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text("{}")
    return out


def run_bad(runner: str, argv: list, capsys) -> tuple[int, list[str]]:
    """Run a runner in-process; (exit status, stderr lines)."""
    main = glue.main if runner == G else summarization.main
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(argv)
    return e.value.code, capsys.readouterr().err.strip().splitlines()


def assert_one_line(code: int, err: list[str], prog: str, want: list[str]) -> str:
    assert code == 2, (code, err)
    assert not any("Traceback" in line for line in err), err
    errors = [line for line in err if not line.startswith("usage:")]
    assert len(errors) == 1, err  # usage lines (argparse) and exactly one error line
    line = errors[0]
    assert line.startswith(f"{prog}: error: "), line
    for w in want:
        assert w in line, (w, line)
    return line


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line(case, env, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GLUE_DIR", raising=False)
    monkeypatch.delenv("SUMM_DIR", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    cid, runner, make, want = case
    if cid == "fp16-on-cpu" and torch.cuda.is_available():
        pytest.skip("a GPU is visible: fp16 is valid")
    out = tmp_path / "out"
    argv = make(env, out)
    before = sorted(p.name for p in out.iterdir()) if out.exists() else None
    code, err = run_bad(runner, argv, capsys)
    assert_one_line(code, err, f"{runner}.py", want)
    # nothing written: no result file, no W&B folder, no checkpoint folder
    after = sorted(p.name for p in out.iterdir()) if out.exists() else None
    assert after == before, after
    assert not (tmp_path / "wandb-dir").exists()


def test_the_table_is_large():
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)


# --------------------------------------------------------------------------- real data
@pytest.mark.skipif(not (REAL_GLUE / "RTE" / "train.tsv").is_file(), reason="no real GLUE")
@pytest.mark.parametrize(
    "extra, want",
    [
        (["--max-length", "1000"], ["--max-length 1000:", "512 positions", "512 or less"]),
        (["--budget", "100000"], ["--budget 100000:", "init_r 4167 exceeds 384"]),
    ],
)
def test_minilm_on_real_rte(extra, want, tmp_path, capsys):
    argv = ["--task", "rte", "--model", "minilm", "--data-dir", str(REAL_GLUE / "RTE")]
    argv += ["--output-dir", str(tmp_path / "out"), "--wandb", "disabled", *extra]
    code, err = run_bad(G, argv, capsys)
    assert_one_line(code, err, "glue.py", want)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- data folders
def test_glue_data_dir_parent_or_task_folder(env, tmp_path, capsys):
    g = env["glue"]
    assert task_dir("rte", g) == g / "RTE" and task_dir("rte", g / "RTE") == g / "RTE"
    assert task_dir("stsb", g / "STS-B") == g / "STS-B"
    assert load_glue("rte", "train", g / "RTE") == load_glue("rte", "train", g)
    # the task folder of another task is not read as this task's
    with pytest.raises(FileNotFoundError, match="RTE/SST-2/train.tsv"):
        load_glue("sst2", "train", g / "RTE")
    views = []
    for d in (g, g / "RTE"):
        glue.main(glue_argv(env, tmp_path, "--dry-run", data=d))
        out = capsys.readouterr().out
        views.append(json.loads(out[out.index("{") :]))
    assert views[0]["n_train"] == views[1]["n_train"] == 16 and not views[1]["unresolved"]


@pytest.mark.skipif(not (REAL_SUMM / "xsum").is_dir(), reason="no real summarization data")
def test_summarization_data_dir_parent_or_dataset_folder(tmp_path, capsys):
    assert summ_jsonl_path("xsum", "test", REAL_SUMM / "xsum") == REAL_SUMM / "xsum" / "test.jsonl"
    rows = load_summarization("xsum", "test", REAL_SUMM / "xsum", limit=3)
    assert rows == load_summarization("xsum", "test", REAL_SUMM, limit=3)
    for d in (REAL_SUMM, REAL_SUMM / "xsum"):
        assert (
            summarization.main(
                ["--dataset", "xsum", "--data-dir", str(d), "--output-dir", str(tmp_path)]
                + ["--max-train-samples", "8", "--max-eval-samples", "4", "--dry-run"]
            )
            is None
        )
        out = capsys.readouterr().out
        view = json.loads(out[out.index("{") :])
        assert view["n_train"] == 8 and "data" not in view["unresolved"]


# --------------------------------------------------------------------------- all-linear
def test_all_linear_passes_through(env, tmp_path, capsys):
    assert split_target_modules("all-linear") == "all-linear"
    assert split_target_modules("ALL-LINEAR") == "ALL-LINEAR"
    assert split_target_modules("query") == ("query",)
    glue.main(glue_argv(env, tmp_path, "--target-modules", "all-linear", "--dry-run"))
    out = capsys.readouterr().out
    view = json.loads(out[out.index("{") :])
    assert view["target_modules"] == "all-linear"
    assert view["n_modules"] == 13  # 12 layer matrices + the pooler; the classifier is a head


# --------------------------------------------------------------------------- the library
@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"init_r": 3, "target_r": 20}, r"target_r \(20\) > init_r \(3\)"),
        ({"init_r": 0}, "init_r must be a positive integer"),
        ({"lora_dropout": 1.5}, r"lora_dropout must be in \[0, 1\)"),
        ({"beta1": 1.0}, r"beta1 must be in \(0, 1\)"),
        ({"deltaT": 0}, "deltaT must be an integer >= 1"),
        ({"tinit": 5, "tfinal": 5, "total_step": 8}, "No budgeting phase"),
        ({"target_modules": "("}, "not a valid regex"),
    ],
)
def test_library_config_errors_stay_value_errors(kw, msg):
    from adalora import AdaLoraConfig

    with pytest.raises(ValueError, match=msg):
        AdaLoraConfig(**kw)


def test_library_model_errors_stay_value_errors(env):
    from transformers import AutoModelForSequenceClassification

    from adalora import AdaLoraConfig, AdaLoraModel, LoraConfig

    model = AutoModelForSequenceClassification.from_pretrained(env["bert"], num_labels=2)
    with pytest.raises(ValueError, match="matched no Linear layer.*Pass names from this list"):
        AdaLoraModel(model, AdaLoraConfig(init_r=2, target_r=1, target_modules=["nosuch"]))
    with pytest.raises(ValueError, match="LoRA rank r must be a positive integer"):
        LoraConfig(r=0)
    with pytest.raises(ValueError, match="final budget 100 exceeds the initial budget"):
        AdaLoraModel(
            model,
            AdaLoraConfig(init_r=2, target_r=1, target_total_rank=100, target_modules=["query"]),
        )


# --------------------------------------------------------------------------- as a command
@pytest.mark.parametrize(
    "case",
    ["max-length-positions", "data-unknown-label", "batch-size-0"],
)
def test_one_line_on_the_real_stderr(case, env, tmp_path):
    """The command itself: stderr holds the error line and nothing else (the model's load
    report, held until every check passed, and its progress bar stay out)."""
    import os
    import subprocess
    import sys

    _, runner, make, want = next(c for c in CASES if c[0] == case)
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, f"experiments/{runner}.py", *make(env, tmp_path / "out")],
        cwd=root,
        env={**os.environ, "WANDB_MODE": "disabled"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.count("\n") == 1 and proc.stderr.endswith("\n"), proc.stderr[-3000:]
    assert_one_line(2, proc.stderr.splitlines(), f"{runner}.py", want)
    assert not (tmp_path / "out").exists()
