"""Evaluation metrics: GLUE task metrics and ROUGE for summarisation.

All values are fractions (accuracy, F1, ROUGE in [0, 1]; MCC and correlations in
[-1, 1]); result tables multiply by 100.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from experiments.tasks import TASKS

# ---------------------------------------------------------------------------- GLUE


def glue_metrics(task: str, predictions: Sequence, references: Sequence) -> dict[str, float]:
    """Compute the GLUE metrics of ``task``.

    The metrics are the task's ``metrics`` in experiments/tasks.py TASKS.

    Args:
        task: GLUE task name ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte").
        predictions: predicted label ids (classification) or predicted scores (STS-B).
        references: gold label ids or gold scores, same length.

    Returns:
        CoLA: {"mcc"} (Matthews correlation); STS-B: {"pearson", "spearman", "corr"} where
        "corr" is the mean of the two; MRPC, QQP: {"accuracy", "f1"} (F1 of class 1);
        other tasks: {"accuracy"}. Plain Python floats, as fractions. A correlation that is
        undefined (constant input) is nan; MCC is 0 in that case (sklearn's convention).
    """
    if task not in TASKS:
        raise ValueError(f"unknown GLUE task {task!r}; known: {', '.join(TASKS)}")
    names = TASKS[task].metrics
    preds, refs = np.asarray(predictions), np.asarray(references)
    if preds.shape != refs.shape or preds.ndim != 1:
        raise ValueError(
            f"predictions {preds.shape} and references {refs.shape} must be 1-d and of equal length"
        )
    if preds.size == 0:
        raise ValueError("no predictions to score")

    if "pearson" in names:  # regression (STS-B)
        from scipy.stats import pearsonr, spearmanr

        preds, refs = preds.astype(float), refs.astype(float)
        if np.ptp(preds) == 0 or np.ptp(refs) == 0:  # correlation undefined
            pearson = spearman = float("nan")
        else:
            pearson = float(pearsonr(preds, refs)[0])
            spearman = float(spearmanr(preds, refs)[0])
        return {"pearson": pearson, "spearman": spearman, "corr": (pearson + spearman) / 2}

    preds, refs = preds.astype(int), refs.astype(int)
    out = {}
    for name in names:
        if name == "mcc":
            from sklearn.metrics import matthews_corrcoef

            out["mcc"] = float(matthews_corrcoef(refs, preds))
        elif name == "accuracy":
            out["accuracy"] = float(np.mean(preds == refs))
        elif name == "f1":
            from sklearn.metrics import f1_score

            out["f1"] = float(f1_score(refs, preds, pos_label=1, zero_division=0.0))
        else:
            raise ValueError(f"GLUE task {task!r}: no code for metric {name!r} (metrics.py)")
    return out


# ---------------------------------------------------------------------------- sentences

# Tokens ending in "." after which a sentence does not end. Compared case-insensitively,
# except those in _ABBREV_CASED (so "No. 10" is kept together but "He said no. Then" splits).
_ABBREV = {
    "mr.",
    "mrs.",
    "ms.",
    "dr.",
    "st.",
    "prof.",
    "jr.",
    "sr.",
    "mt.",
    "ft.",
    "gen.",
    "col.",
    "lt.",
    "sgt.",
    "capt.",
    "gov.",
    "sen.",
    "rep.",
    "rev.",
    "hon.",
    "u.s.",
    "u.k.",
    "u.n.",
    "e.g.",
    "i.e.",
    "etc.",
    "vs.",
    "v.",
    "inc.",
    "ltd.",
    "co.",
    "corp.",
    "approx.",
    "est.",
    "jan.",
    "feb.",
    "mar.",
    "apr.",
    "aug.",
    "sept.",
    "sep.",
    "oct.",
    "nov.",
    "dec.",
}
_ABBREV_CASED = {"No.", "Nos.", "Fig.", "Vol."}

_OPENERS = "\"'`“‘(["
_CLOSERS = "\"'`”’)]"
# End punctuation (optionally followed by closing quotes/brackets), then whitespace, then
# the start of a new sentence: an optional opening quote/bracket and an uppercase letter or
# a digit. Only the punctuation and closers are consumed; the split is at the match end.
_BOUNDARY = re.compile(rf"[.!?]+[{re.escape(_CLOSERS)}]*(?=\s+[{re.escape(_OPENERS)}]*[A-Z0-9])")


def _is_abbreviation(token: str) -> bool:
    """Whether ``token`` (a whitespace-free word ending in ".") is an abbreviation/initial."""
    token = token.lstrip(_OPENERS)
    if re.fullmatch(r"[A-Z]\.", token):  # an initial, as in "J. K. Rowling"
        return True
    return token.lower() in _ABBREV or token in _ABBREV_CASED


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences with a regular expression (no nltk data needed).

    Rules: always split at line breaks; otherwise split after ``.``, ``!`` or ``?``
    (possibly repeated and followed by closing quotes or brackets) when whitespace and then
    an uppercase letter, a digit or an opening quote/bracket follow. A period does not end
    a sentence after common abbreviations (Mr. Mrs. Dr. St. U.S. e.g. i.e. etc. No. vs. ...)
    or single-letter initials; decimals like 3.5 never split (no whitespace after the dot).

    Returns:
        The sentences, stripped, without empty ones.
    """
    sentences: list[str] = []
    for line in text.splitlines():
        start = 0
        for m in _BOUNDARY.finditer(line):
            punct = m.group(0).rstrip(_CLOSERS)
            if punct == ".":
                word = line[: m.start() + 1].rsplit(None, 1)[-1]  # word ending in the "."
                if _is_abbreviation(word):
                    continue
            sentences.append(line[start : m.end()])
            start = m.end()
        sentences.append(line[start:])
    return [s.strip() for s in sentences if s.strip()]


# ---------------------------------------------------------------------------- ROUGE

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def rouge_scores(
    predictions: Sequence[str], references: Sequence[str], use_stemmer: bool = True
) -> dict[str, float]:
    """Mean ROUGE F-measures of ``predictions`` against ``references`` (one reference each).

    Uses ``rouge_score.rouge_scorer.RougeScorer`` (Porter stemming when ``use_stemmer``).
    rouge1, rouge2 and rougeL are computed on the raw texts. For rougeLsum (summary-level
    LCS) both texts are first split with :func:`split_sentences` and the sentences joined
    with "\\n", which is how rouge-score delimits sentences for that metric.

    Returns:
        {"rouge1", "rouge2", "rougeL", "rougeLsum"}: means over the pairs, as fractions.
    """
    from rouge_score import rouge_scorer

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise ValueError("no predictions to score")
    plain = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=use_stemmer)
    lsum = rouge_scorer.RougeScorer(["rougeLsum"], use_stemmer=use_stemmer)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for pred, ref in zip(predictions, references):
        for name, score in plain.score(ref, pred).items():  # score(target, prediction)
            totals[name] += score.fmeasure
        totals["rougeLsum"] += lsum.score(
            "\n".join(split_sentences(ref)), "\n".join(split_sentences(pred))
        )["rougeLsum"].fmeasure
    return {name: total / len(predictions) for name, total in totals.items()}
