"""The resolved configuration of many runner command lines, captured offline and fast: what
``--dry-run`` prints (or the one-line error) for every case of a fixed table of flag
combinations. tests/test_resolved_configs.py compares it with tests/fixtures/resolved_configs.json,
captured when the table was written; a refactor of the runners' flags, presets or resolution
must leave every entry identical (or change the fixture on purpose, saying why).

    python -m tests.resolved_configs --write    # re-capture the fixture (after a deliberate change)
    python -m tests.resolved_configs            # compare, list the differences
    python -m tests.resolved_configs --records [--write]   # the same for tiny real runs' records

What is stubbed, so that the capture needs neither the data nor the network: GLUE's data
(n_train / n_eval are the real GLUE split sizes, capped by --max-train-samples /
--max-eval-samples; nothing is read or tokenised), Hub models (unavailable: the dry run then
uses KNOWN_N_MODULES, as offline). Real: the packaged MiniLM and tiny-bart, the summarisation
data (a few synthetic JSON-lines pairs written to a temporary folder: the split choice and its
note run for real), the committed AdaLoRA result files that --rank-pattern-from reads.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path

for _k, _v in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "WANDB_MODE": "disabled",
    "OMP_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_k, _v)

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "resolved_configs.json"

# GLUE train and evaluation split sizes (the official files; /work/shared/data/SOURCES.md)
GLUE_SIZES = {
    "cola": (8551, {"validation": 1043}),
    "sst2": (67349, {"validation": 872}),
    "mrpc": (3668, {"validation": 408}),
    "qqp": (363846, {"validation": 40430}),
    "stsb": (5749, {"validation": 1500}),
    "mnli": (392702, {"validation_matched": 9815, "validation_mismatched": 9832}),
    "qnli": (104743, {"validation": 5463}),
    "rte": (2490, {"validation": 277}),
}
LOCAL_MODELS = ("minilm", "tiny-bart")
DATA = "<DATA>"  # the temporary summarisation folder, as the fixture writes it
# An AdaLoRA result file of the converged grid (MiniLM, STS-B): the rank-pattern LoRA's source
RANK_FILE = "results/evidence/converged/seeds/conv-stsb-adalora-lr2e-3-s2.json"


def _get(hp, key):
    return hp.get(key) if isinstance(hp, dict) else getattr(hp, key, None)


_CACHE: dict = {}


def _stub_task(make_task, kind):
    """``make_task`` whose Task loads no Hub model, and (GLUE) no data: split sizes only."""
    from experiments.train import Data

    def factory(args):
        task = make_task(args)
        real_model, real_tok = task.load_model, task.load_tokenizer

        def local(name):
            if name not in LOCAL_MODELS and not Path(str(name)).exists():
                raise OSError(f"{name}: not available offline (test stub)")

        def load_model(name, *a, **kw):
            local(name)
            if kind != "glue":  # summarization sets generation options on the model
                return real_model(name, *a, **kw)
            key = ("model", task.name, name)  # a dry run only reads the model
            if key not in _CACHE:
                _CACHE[key] = real_model(name, *a, **kw)
            return _CACHE[key]

        def load_tokenizer(name, *a, **kw):
            local(name)
            key = ("tokenizer", name)
            if kind != "glue":  # summarization's loader keeps its tokenizer
                return real_tok(name, *a, **kw)
            if key not in _CACHE:
                _CACHE[key] = real_tok(name, *a, **kw)
            return _CACHE[key]

        task.load_model, task.load_tokenizer = load_model, load_tokenizer
        if kind == "glue":

            def load_data(tok, hp, data_dir):
                n, evals = GLUE_SIZES[task.name]
                cap = lambda m, k: m if _get(hp, k) is None else min(m, _get(hp, k))
                n_eval = {s: cap(m, "max_eval_samples") for s, m in evals.items()}
                return Data(
                    train=[], evals=dict.fromkeys(n_eval), n_train=cap(n, "max_train_samples"),
                    n_eval=n_eval,
                )  # fmt: skip

            task.load_data = load_data
        return task

    return factory


def write_summ_data(root: Path) -> Path:
    """xsum with train (80), validation (30), test (120); cnn_dailymail with test (120) only,
    as the shared offline copy (no train split): enough for one batch of every preset."""
    layout = {
        "xsum": {"train": 80, "validation": 30, "test": 120},
        "cnn_dailymail": {"test": 120},
    }
    for ds, splits in layout.items():
        (root / ds).mkdir(parents=True, exist_ok=True)
        for split, n in splits.items():
            rows = [
                {
                    "id": f"{ds}-{split}-{i}",
                    "document": f"The council met on day {i} and approved plan {i} for the "
                    "town centre after a long debate about parking.",
                    "summary": f"Plan {i} approved.",
                }
                for i in range(n)
            ]
            text = "".join(json.dumps(r) + "\n" for r in rows)
            (root / ds / f"{split}.jsonl").write_text(text, encoding="utf-8")
    return root


def capture(runner: str, argv: list[str], out_dir: str, data_dir: str) -> dict:
    """{"out": the dry run's JSON} or {"error": exit status and stderr}, for ``runner``
    ("glue" or "summarization") run in-process on ``argv`` + --dry-run, from the repo root."""
    import importlib

    mod = importlib.import_module(f"experiments.{runner}")
    argv = [a.replace(DATA, data_dir) for a in argv] + ["--output-dir", out_dir, "--dry-run"]
    real = mod.make_task
    mod.make_task = _stub_task(real, runner)
    out, err, cwd = io.StringIO(), io.StringIO(), os.getcwd()
    try:
        os.chdir(ROOT)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                mod.main(argv)
                result = None
            except SystemExit as e:
                line = err.getvalue().strip().splitlines()[-1:]
                result = {"error": [e.code, [x.replace(data_dir, DATA) for x in line]]}
            except Exception as e:  # noqa: BLE001 - a crash is a result too (a traceback)
                result = {"error": [type(e).__name__, str(e).splitlines()[:1]]}
    finally:
        os.chdir(cwd)
        mod.make_task = real
    if result is not None:
        return result
    text = out.getvalue()
    start = text.index("{\n") if text.startswith("{\n") else text.index("\n{\n") + 1
    view = json.loads(text[start:])
    if "model" in view.get("unresolved", {}):  # the loader's wording is not ours
        view["unresolved"]["model"] = "unavailable"
    return {"out": json.loads(json.dumps(view).replace(data_dir, DATA))}


# --------------------------------------------------------------------------- the table
GLUE_TASKS = ("sst2", "rte", "mrpc", "stsb", "cola", "qnli", "qqp", "mnli")
METHODS = ("adalora", "lora", "full", "bitfit", "svd_lora", "prune_lora")
# flags crossed with both presets, two tasks and the methods they concern
GLUE_FLAGS = [
    ["--tinit-frac", "0.1"],
    ["--tfinal-frac", "0.3"],
    ["--tinit-frac", "0.1", "--tfinal-frac", "0.3"],
    ["--tinit", "100", "--tfinal", "200"],
    ["--tinit", "100"],
    ["--tinit", "100", "--tinit-frac", "0.2"],
    ["--max-steps", "300"],
    ["--max-steps", "300", "--epochs", "2"],
    ["--budget", "144"],
    ["--budget", "144", "--target-r", "4"],
    ["--target-r", "4"],
    ["--init-r", "6", "--target-r", "4"],
    ["--lora-r", "4"],
    ["--lora-alpha", "8"],
    ["--lr", "2e-4", "--epochs", "3", "--batch-size", "16", "--grad-accum", "2"],
    ["--warmup", "0.1"],
    ["--warmup", "50"],
    ["--score", "sensitivity"],
    ["--score", "magnitude", "--schedule", "linear"],
    ["--schedule", "constant", "--variant", "paper"],
    ["--variant", "authors"],
    ["--orth-reg-weight", "0"],
    ["--target-modules", "query,value"],
    ["--target-modules", "all-linear"],
    ["--target-modules", ".*attention.*"],
    ["--target-modules", "query"],
    ["--max-train-samples", "100", "--max-eval-samples", "50"],
    ["--evals", "5", "--precision", "fp32", "--group-by-length", "yes"],
    ["--cls-dropout", "0.3", "--weight-decay", "0.1", "--lora-dropout", "0.1"],
    ["--delta-t", "5", "--beta1", "0.9", "--beta2", "0.95"],
    ["--max-length", "64", "--eval-batch-size", "7", "--seed", "7"],
    ["--model", "minilm"],
    ["--model", "minilm", "--tinit-frac", "0.1", "--tfinal-frac", "0.3"],
    ["--sweep-json", '{"lr": 0.001}'],
    ["--rank-pattern-from", RANK_FILE, "--lora-r", "2", "--lora-alpha", "2"],
    ["--rank-pattern-from", RANK_FILE],
]
GLUE_ERRORS = [
    ["--tinit-frac", "0.6", "--tfinal-frac", "0.5"],
    ["--lr", "-1"],
    ["--target-r", "8", "--init-r", "2"],
    ["--max-steps", "10", "--tinit", "5", "--tfinal", "5"],
    ["--epochs", "0"],
    ["--batch-size", "0"],
    ["--tinit-frac", "1.5"],
    ["--target-modules", "("],
    ["--score", "nope"],
    ["--method", "nope"],
    ["--unknown-flag", "1"],
    ["--seed", "-1"],
    ["--group-by-length", "maybe"],
    ["--sweep-json", "[1]"],
    ["--resume"],
    ["--rank-pattern-from", RANK_FILE],
]
SUMM_FLAGS = [
    ["--budget-level", "2.20"],
    ["--budget-level", "0.26"],
    ["--budget-level", "0.13", "--init-r", "4"],
    ["--budget-level", "1.10", "--target-r", "4"],
    ["--num-beams", "2", "--gen-max-length", "20"],
    ["--length-penalty", "2.0", "--no-repeat-ngram-size", "3"],
    ["--source-prefix", "summarize: "],
    ["--train-split", "validation", "--eval-split", "test"],
    ["--train-split", "test", "--eval-split", "test"],
    ["--max-target-length", "32"],
    ["--tinit-frac", "0.2"],
    ["--tinit", "10", "--tfinal", "20"],
    ["--model", "tiny-bart"],
    ["--model", "tiny-bart", "--tinit-frac", "0.2"],
    ["--max-steps", "50"],
    ["--target-r", "2", "--lora-r", "3"],
    ["--cls-dropout", "0.2"],
]


def _dedup(cases: list) -> list:
    seen, out = set(), []
    for c in cases:
        key = json.dumps(c)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def grid_commands() -> list[list[str]]:
    """glue.py argvs of the committed result files and of the converged plan (scripts/
    plan_converged.py, all jobs, done ones included), without --output-dir / --run-name /
    --save-steps (which the dry run does not print), one seed per configuration."""
    import shlex

    from experiments.results import load_results

    argvs = [shlex.split(r["command"])[2:] for r in load_results(ROOT / "results")]
    try:
        from scripts import plan_converged

        jobs = plan_converged.plan(ROOT / "results" / "evidence" / "converged")
        argvs += [list(j.flags) for j in jobs]
    except Exception as e:  # noqa: BLE001 - the planner is optional here
        print(f"note: no converged plan ({e})", file=sys.stderr)
    out = []
    for argv in argvs:
        keep, seen_seed, i = [], False, 0
        while i < len(argv):
            a = argv[i]
            if a in ("--output-dir", "--run-name", "--save-steps", "--sweep-json"):
                i += 2
                continue
            if a == "--seed":
                keep += ["--seed", "1"]
                seen_seed = True
                i += 2
                continue
            keep.append(a.replace(f"{ROOT}/", ""))  # repo-relative paths
            i += 1
        assert seen_seed, argv
        out.append(keep)
    return _dedup(out)


def cases() -> list[dict]:
    """Every case: {"runner", "argv"}."""
    out = []
    for preset in ("quick", "paper"):
        for task in GLUE_TASKS:
            for method in METHODS:
                out.append(["--preset", preset, "--task", task, "--method", method])
        for flags in GLUE_FLAGS:
            methods = ("lora",) if "--rank-pattern-from" in flags else METHODS
            for method in methods:
                out.append(["--preset", preset, "--task", "rte", "--method", method, *flags])
        for flags in GLUE_ERRORS:
            m = [] if "--method" in flags else ["--method", "adalora"]
            out.append(["--preset", preset, "--task", "rte", *m, *flags])
    glue = [{"runner": "glue", "argv": a} for a in _dedup(out) + grid_commands()]
    summ = []
    for preset in ("quick", "paper"):
        for ds in ("xsum", "cnn_dailymail"):
            for method in METHODS:
                summ.append(["--preset", preset, "--dataset", ds, "--method", method])
        for flags in SUMM_FLAGS:
            for method in ("adalora", "lora", "full"):
                ds = "cnn_dailymail" if "--budget-level" in flags else "xsum"
                summ.append(["--preset", preset, "--dataset", ds, "--method", method, *flags])
    summ = [{"runner": "summarization", "argv": [*a, "--data-dir", DATA]} for a in summ]
    return glue + summ


def capture_all(table: list[dict], progress: bool = False) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        data = str(write_summ_data(Path(tmp) / "summ"))
        out = []
        for i, case in enumerate(table):
            res = capture(case["runner"], case["argv"], str(Path(tmp) / "out"), data)
            out.append({**case, **res})
            if progress and i % 50 == 0:
                print(f"{i}/{len(table)}", file=sys.stderr)
        return out


# --------------------------------------------------------------------------- result files
RECORD_FIXTURE = ROOT / "tests" / "fixtures" / "recorded_hyperparameters.json"
RECORD_KEYS = ("kind", "task", "method", "variant", "seed", "preset", "n_train", "n_eval", "budget")


def record_runs(tmp: Path) -> dict:
    """What a result file records of its configuration (``hyperparameters`` and the keys of
    RECORD_KEYS; precision_used is the machine's) and the checkpoint's run.json (the settings
    a resumed run must match), for tiny real runs (2 steps) of each runner."""
    from experiments import glue, summarization
    from tests.helpers import save_tiny_model, write_glue_dir

    bert = str(save_tiny_model(tmp / "bert", "bert"))
    gdir = str(write_glue_dir(tmp / "glue", ["rte", "stsb"], n_train=16, n_eval=8))
    sdir = str(write_summ_data(tmp / "summ"))
    out = tmp / "runs"
    common = ["--max-steps", "4", "--wandb", "disabled", "--output-dir", str(out), "--seed", "3"]
    glue_common = [*common, "--model", bert, "--data-dir", gdir, "--batch-size", "4"]
    ada = out / "ada.json"
    runs = {
        "ada": (glue, ["--task", "rte", "--method", "adalora", "--target-r", "2", "--tinit", "1",
                       "--tfinal", "1", "--save-steps", "2", "--keep-checkpoints"]),
        "lora": (glue, ["--task", "stsb", "--method", "lora", "--target-r", "2", "--lr", "2e-3",
                        "--sweep-json", '{"lr": 0.002}']),
        "rp": (glue, ["--task", "rte", "--method", "lora", "--lora-r", "2", "--lora-alpha", "2",
                      "--rank-pattern-from", str(ada)]),
        "full": (glue, ["--task", "rte", "--method", "full", "--tinit-frac", "0.1"]),
        "summ": (summarization, ["--dataset", "xsum", "--method", "adalora", "--max-eval-samples",
                                 "3", "--num-beams", "2", "--max-length", "64",
                                 "--max-target-length", "16", "--batch-size", "2"]),
    }  # fmt: skip
    got = {}
    for name, (mod, argv) in runs.items():
        extra = glue_common if mod is glue else [*common, "--data-dir", sdir]
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            rec = mod.main([*argv, *extra, "--run-name", name])
        hp = {k: v for k, v in rec["hyperparameters"].items() if k != "precision_used"}
        entry = {"hyperparameters": hp, **{k: rec[k] for k in RECORD_KEYS}}
        ck = out / "checkpoints" / name / "run.json"
        if ck.is_file():
            saved = json.loads(ck.read_text())
            saved["hp"].pop("precision_used", None)
            entry["run.json"] = saved
        text = json.dumps(entry, sort_keys=True, default=str)
        for path, mark in ((bert, "<BERT>"), (gdir, "<GLUE>"), (sdir, DATA), (str(out), "<OUT>")):
            text = text.replace(path, mark)
        got[name] = json.loads(text)
    return got


def differences(expected: list[dict], got: list[dict]) -> list[str]:
    """One line per case whose capture differs (its argv and the first differing key)."""
    lines = []
    for e, g in zip(expected, got):
        if e == g:
            continue
        key = "?"
        if "out" in e and "out" in g:
            ks = sorted(set(e["out"]) | set(g["out"]))
            key = next(k for k in ks if e["out"].get(k, "<absent>") != g["out"].get(k, "<absent>"))
            key = f"{key}: {e['out'].get(key, '<absent>')!r} -> {g['out'].get(key, '<absent>')!r}"
        else:
            key = f"{e.get('error') or 'out'} -> {g.get('error') or 'out'}"
        lines.append(f"{e['runner']} {' '.join(e['argv'])}: {key}")
    return lines


def main(argv: list[str]) -> int:
    if "--records" in argv:
        with tempfile.TemporaryDirectory() as tmp:
            got = record_runs(Path(tmp))
        if "--write" in argv:
            RECORD_FIXTURE.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
            print(f"{len(got)} runs -> {RECORD_FIXTURE}")
            return 0
        same = got == json.loads(RECORD_FIXTURE.read_text())
        print("records identical" if same else "records DIFFER")
        return 0 if same else 1
    if "--write" in argv:
        table = cases()
        got = capture_all(table, progress=True)
        FIXTURE.parent.mkdir(parents=True, exist_ok=True)
        FIXTURE.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        print(f"{len(got)} cases -> {FIXTURE}")
        return 0
    expected = json.loads(FIXTURE.read_text())
    got = capture_all([{"runner": c["runner"], "argv": c["argv"]} for c in expected], True)
    diff = differences(expected, got)
    print("\n".join(diff) or f"all {len(expected)} cases identical")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
