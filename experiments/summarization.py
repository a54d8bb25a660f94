"""Summarisation (XSum, CNN/DailyMail) with AdaLoRA, LoRA, full FT or BitFit: the paper's Table 3.

    python experiments/summarization.py --method adalora --dataset xsum   # quick: tiny BART, CPU
    python experiments/summarization.py --method adalora --dataset xsum --model PATH_OR_HUB_NAME
    python experiments/summarization.py --preset paper --dataset xsum --method adalora --dry-run
    python experiments/summarization.py --preset paper --dataset cnn_dailymail --method lora \
        --budget-level 0.26                                                       # a Table 3 cell

Same training path, flags, result files and W&B logging as glue.py (experiments/train.py);
--dataset (alias --task) picks the data set. Any AutoModelForSeq2SeqLM works (BART, T5, Pegasus,
...); the default adapted matrices per architecture come from adalora.targets.

Presets
  paper  The authors' BART-large scripts (QingruZhang/AdaLoRA NLG_QA/scripts/run_bart_*.sh):
         facebook/bart-large, all of q/k/v/out_proj/fc1/fc2 (192 matrices), alpha 32, gamma 0.1,
         betas 0.85, deltaT 100, lr 5e-4, 3000 warm-up steps, weight decay 0, one evaluation per
         epoch on the validation split, generation max length = the target length.
         XSum: r 12->8, batch 64, 25 epochs, tinit 6000, tfinal 25000, source 768 / target 64
         tokens, 8 beams. CNN/DM: r 4->2, batch 32, 15 epochs, tinit 5000, tfinal 85000, source
         1024 / target 160 tokens, 4 beams. (Full FT and BitFit: the paper gives no LR; pass
         --lr, e.g. 3e-5 as in the fairseq BART recipe.) Precision bf16 on GPU, like glue.py's
         paper preset (the authors ran fp32: pass --precision fp32).
  quick  CPU-sized: --model tiny-bart by default, a 2+2-layer BART (d_model 64) built from its
         config with RANDOM weights and the packaged all-MiniLM-L6-v2 WordPiece tokenizer. No
         pretrained seq2seq model is available offline, so its ROUGE only shows that the pipeline
         works; it is not a result. Pass --model (a local folder, or a Hub name when online,
         e.g. facebook/bart-base, t5-small) for a meaningful quick run.

Budget levels (--budget-level, Table 3's share of trainable parameters 2.20 / 1.10 / 0.26 / 0.13 %)
  The paper gives no ranks per level. Ours are DERIVED: the final average rank r such that
  r * sum over adapted matrices of (in + out + 1) (AdaLoRA's P, Q and lambda) is that share of
  the model's parameters, counted on the model built from its config (meta device, no weights).
  For facebook/bart-large (406,291,456 parameters, 192 matrices, sum(in + out + 1) = 540,864):
      2.20% -> avg rank 16.53 (b(T) = 3173)    1.10% -> 8.26 (b(T) = 1587)
      0.26% -> 1.95 (b(T) = 375)               0.13% -> 0.98 (b(T) = 187)
  i.e. close to ranks 16 / 8 / 2 / 1. With a level, init_r = ceil(1.5 x avg rank) (the paper's
  ratio, as XSum's 12 -> 8) unless --init-r is given; LoRA gets rank round(b(T) / n) as always.
  Without a level the preset's ranks apply (XSum 12 -> 8 = 1.07%, CNN/DM 4 -> 2 = 0.27%).

Data: --data-dir (or SUMM_DIR) holding <dataset>/<split>.jsonl, else the Hub
(experiments/data/summarization.py).
  --train-split / --eval-split pick the splits (paper: train / validation, as the authors' script;
  quick: train if present, else the evaluation split; evaluation on validation if present, else
  test). When both are the same split (the shared offline copy has no train split: XSum has
  validation (980) and test (1000), CNN/DM only test (250)), training uses the FIRST examples
  and evaluation the LAST --max-eval-samples of that split, disjoint; the run prints this and
  the record keeps it in hyperparameters.data_note.
  Every line of a data file is checked, also past the examples a run keeps. An explicit
  --max-train-samples / --max-eval-samples above what the data holds, or fewer training
  examples than one batch, is an error; a preset's cap above a split's size is not (the data
  note records the counts). Summary and generation lengths are checked against the tokenizer
  and the model's generation config (experiments/validation/inputs.py).

Metrics: ROUGE-1/2/L/Lsum F1 (rouge-score, Porter stemming; Lsum on regex-split sentences:
experiments.metrics.rouge_scores) of beam-search generations against the untruncated reference
summaries (the authors scored against references truncated to the target length). Main metric:
rougeL. Predictions of the final evaluation: <output-dir>/<run-name>.predictions.jsonl, one
{"id", "split", "prediction", "reference"} per line (and .predictions.best.jsonl when the best
evaluation was an earlier one). Result file: results/runs/<run-name>.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from experiments import cli, presets
from experiments.config import SummConfig
from experiments.data.summarization import load_split
from experiments.hub import load_pretrained
from experiments.metrics import rouge_scores
from experiments.results import write_text_atomic
from experiments.summ_models import (
    BUDGET_LEVELS,  # noqa: F401 - the runner's levels (tests, scripts)
    minilm_tokenizer,
    tiny_bart_config,
)
from experiments.train import Data, Task
from experiments.validation.inputs import check_generation, check_split_sizes

MAIN_METRIC = "rougeL"


# ---------------------------------------------------------------- task
def predictions_keeper(state: dict):
    """A Trainer callback that keeps the generations of the last and of the best evaluation so
    far (what the predictions files get) in checkpoints, so that a resumed run writes the files
    an uninterrupted one writes (experiments/checkpoints.py restores ``predictions``)."""
    from transformers import TrainerCallback
    from transformers.trainer_callback import ExportableState

    class PredictionsKeeper(TrainerCallback, ExportableState):
        def state(self) -> dict:
            return {"args": {}, "attributes": {"predictions": self.predictions}}

        @property
        def predictions(self) -> dict:
            return {"final": state["final"], "best": state["best"]}

        @predictions.setter
        def predictions(self, saved: dict) -> None:
            final = dict(saved.get("final") or {})
            # a best evaluation that is the final one is the same entry (one predictions file)
            best = {s: final[s] if e == final.get(s) else e for s, e in saved["best"].items()}
            state["final"], state["best"] = final, best

    return PredictionsKeeper()


def make_task(cfg: SummConfig) -> Task:
    dataset = cfg.task
    state = {"tokenizer": None, "eval_rows": {}, "final": {}, "best": {}}

    def load_tokenizer(name):
        from transformers import AutoTokenizer

        tok = minilm_tokenizer() if name == "tiny-bart" else _load(AutoTokenizer, name)
        state["tokenizer"] = tok
        return tok

    def load_model(name, cfg: SummConfig):
        from transformers import AutoModelForSeq2SeqLM

        if name == "tiny-bart":  # random weights: a pipeline check, not a result
            model = AutoModelForSeq2SeqLM.from_config(tiny_bart_config(minilm_tokenizer()))
        else:
            model = _load(AutoModelForSeq2SeqLM, name)
        gc = model.generation_config
        if cfg.length_penalty is not None:
            gc.length_penalty = cfg.length_penalty
        if cfg.no_repeat_ngram_size is not None:
            gc.no_repeat_ngram_size = cfg.no_repeat_ngram_size
        return model

    def model_hp(model, cfg: SummConfig):
        """The source prefix (T5's task prefix) and what generation will use (num_beams /
        max_length are passed by Seq2SeqTrainer, the rest is the model's generation config)."""
        out = {}
        if cfg.source_prefix is None:
            t5 = model.config.model_type in ("t5", "mt5", "umt5")
            out["source_prefix"] = "summarize: " if t5 else ""
        check_generation(cfg, model, state["tokenizer"])
        gc = model.generation_config
        out["generation"] = {
            "num_beams": cfg.num_beams,
            "max_length": _gen_max_length(cfg),
            **{
                k: getattr(gc, k, None)
                for k in (
                    "length_penalty",
                    "no_repeat_ngram_size",
                    "min_length",
                    "early_stopping",
                    "forced_bos_token_id",
                    "forced_eos_token_id",
                )
            },
        }
        return out

    def encode(tok, rows, cfg: SummConfig):
        src = [(cfg.source_prefix or "") + r["document"] for r in rows]
        enc = tok(src, max_length=cfg.max_length, truncation=True)
        labels = tok(
            text_target=[r["summary"] for r in rows],
            max_length=cfg.max_target_length,
            truncation=True,
        )["input_ids"]
        return [
            {
                "input_ids": enc["input_ids"][i],
                "attention_mask": enc["attention_mask"][i],
                "labels": labels[i],
            }
            for i in range(len(rows))
        ]

    def load_data(tok, cfg: SummConfig, data_dir):
        split = load_split(dataset, cfg.hyperparameters(), data_dir)
        check_split_sizes(cfg, split, dataset)
        print(f"[{dataset}] data: {split.note}")
        state["eval_rows"] = {split.eval_split: split.eval}
        return Data(
            train=encode(tok, split.train, cfg),
            evals={split.eval_split: encode(tok, split.eval, cfg)},
            n_train=len(split.train),
            n_eval={split.eval_split: len(split.eval)},
            hp={"data_note": split.note},
        )

    def collator(tok, model):
        from transformers import DataCollatorForSeq2Seq

        return DataCollatorForSeq2Seq(tok, model=model, label_pad_token_id=-100)

    def compute_metrics(eval_pred, split):
        tok = state["tokenizer"]
        ids = eval_pred.predictions
        ids = ids[0] if isinstance(ids, tuple) else ids
        ids = np.where(ids < 0, tok.pad_token_id, ids)  # eval loop pads across batches with -100
        preds = [
            p.strip()
            for p in tok.batch_decode(
                ids, skip_special_tokens=True, clean_up_tokenization_spaces=True
            )
        ]
        rows = state["eval_rows"][split]
        if len(preds) != len(rows):
            raise RuntimeError(f"{len(preds)} generations for {len(rows)} {split} examples")
        scores = rouge_scores(preds, [r["summary"] for r in rows])
        lens = [int(np.sum(row != tok.pad_token_id)) for row in ids]
        out = {**scores, "gen_len": float(np.mean(lens))}
        entry = {"predictions": preds, "scores": scores}
        state["final"][split] = entry
        best = state["best"].get(split)
        if best is None or scores[MAIN_METRIC] > best["scores"][MAIN_METRIC]:
            state["best"][split] = entry  # on ties the first, as experiments/record.py
        return out

    def after_eval(result_file, trainer, eval_sets):
        written = save_predictions(result_file, state)
        for p in written:
            print(f"[{dataset}] predictions: {p}")

    def trainer_kwargs(cfg: SummConfig):
        return {
            "predict_with_generate": True,
            "generation_max_length": _gen_max_length(cfg),
            "generation_num_beams": cfg.num_beams,
        }

    return Task(
        kind="summarization",
        name=dataset,
        main_metric=MAIN_METRIC,
        load_model=load_model,
        load_tokenizer=load_tokenizer,
        load_data=load_data,
        collator=collator,
        compute_metrics=compute_metrics,
        trainer_kwargs=trainer_kwargs,
        model_hp=model_hp,
        seq2seq=True,
        after_eval=after_eval,
        callbacks=lambda: [predictions_keeper(state)],
    )


def _load(loader, name: str):
    """hub.load_pretrained with a seq2seq hint instead of its 'minilm' one."""
    try:
        return load_pretrained(loader, name)
    except RuntimeError as e:
        raise RuntimeError(
            str(e).split(" Pass --model")[0] + " Pass --model PATH to a local "
            "seq2seq model folder, or --model tiny-bart (random weights: a pipeline "
            "check only)."
        ) from None


def _gen_max_length(cfg: SummConfig) -> int:
    return cfg.gen_max_length or cfg.max_target_length


# ---------------------------------------------------------------- predictions
def predictions_path(result_file, which: str = "") -> Path:
    """<run-name>.predictions.jsonl (final evaluation) or .predictions.best.jsonl, beside the
    result file."""
    p = Path(result_file)
    return p.with_name(p.stem + ".predictions" + (f".{which}" if which else "") + ".jsonl")


def _write_jsonl_atomic(path: Path, rows: list[dict]) -> Path:
    """One JSON object a line; atomic and never replacing an existing file."""
    return write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def save_predictions(result_file, state: dict) -> list[Path]:
    written = []
    for which, key in (("", "final"), ("best", "best")):
        if which and all(state["best"][s] is state["final"][s] for s in state["final"]):
            continue  # the best evaluation is the final one: one file
        rows = []
        for split, entry in state[key].items():
            for ex, pred in zip(state["eval_rows"][split], entry["predictions"]):
                rows.append(
                    {"id": ex["id"], "split": split, "prediction": pred, "reference": ex["summary"]}
                )
        if rows:
            written.append(_write_jsonl_atomic(predictions_path(result_file, which), rows))
    return written


def read_predictions(path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def main(argv=None):
    """Run summarization.py on ``argv`` (default: sys.argv[1:]); returns the result record (None
    for --dry-run)."""
    return cli.main(SummConfig, presets.SUMMARIZATION, make_task, __file__, __doc__, argv)


if __name__ == "__main__":
    main()
