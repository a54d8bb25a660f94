"""Tests for experiments/metrics.py against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from experiments.metrics import glue_metrics, rouge_scores, split_sentences
from experiments.tasks import TASKS

# ---------------------------------------------------------------------------- GLUE

# 7 binary examples: TP=3 (idx 0-2), TN=2 (idx 3-4), FP=1 (idx 5), FN=1 (idx 6).
REFS = [1, 1, 1, 0, 0, 0, 1]
PREDS = [1, 1, 1, 0, 0, 1, 0]


def test_mcc_by_hand():
    tp, tn, fp, fn = 3, 2, 1, 1
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert mcc == pytest.approx(5 / 12)
    assert glue_metrics("cola", PREDS, REFS) == {"mcc": pytest.approx(5 / 12)}


def test_accuracy_and_f1_by_hand():
    # precision = 3/4, recall = 3/4 -> F1 = 2*TP / (2*TP + FP + FN) = 6/8
    for task in ("mrpc", "qqp"):
        assert glue_metrics(task, PREDS, REFS) == {
            "accuracy": pytest.approx(5 / 7),
            "f1": pytest.approx(0.75),
        }
    for task in ("sst2", "qnli", "rte"):
        assert glue_metrics(task, PREDS, REFS) == {"accuracy": pytest.approx(5 / 7)}
    assert glue_metrics("mnli", [0, 1, 2, 2], [0, 1, 2, 1]) == {"accuracy": 0.75}


def test_f1_uses_class_one_as_positive():
    # Only class 0 is ever right: no true positives -> F1 0 while accuracy is 1/2.
    assert glue_metrics("mrpc", [0, 0], [0, 1]) == {"accuracy": 0.5, "f1": 0.0}


def test_stsb_correlations_by_hand():
    # x mean 2.5, y mean 5; dx = -1.5 -.5 .5 1.5; dy = -3 -1 0 4
    # sum dx*dy = 11, sum dx^2 = 5, sum dy^2 = 26 -> r = 11 / sqrt(130); ranks agree -> rho 1
    out = glue_metrics("stsb", [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 5.0, 9.0])
    r = 11 / math.sqrt(130)
    assert out == {
        "pearson": pytest.approx(r),
        "spearman": pytest.approx(1.0),
        "corr": pytest.approx((r + 1) / 2),
    }


def test_spearman_by_hand():
    # rank differences d = 0 1 1 0 0 -> rho = 1 - 6*sum(d^2) / (n (n^2 - 1)) = 1 - 12/120
    out = glue_metrics("stsb", [1, 2, 3, 4, 5], [1, 3, 2, 4, 5])
    assert out["spearman"] == pytest.approx(0.9)
    # Pearson on the same data: dx = dy up to a swap; sum dx*dy = 9, sum dx^2 = sum dy^2 = 10
    assert out["pearson"] == pytest.approx(0.9)


def test_constant_inputs():
    assert math.isnan(glue_metrics("stsb", [2.0, 2.0, 2.0], [1.0, 2.0, 3.0])["pearson"])
    assert glue_metrics("cola", [1, 1, 1], [0, 1, 1]) == {"mcc": 0.0}


def test_metric_names_match_task_metadata():
    for name, task in TASKS.items():
        preds = [0.5, 1.0, 2.0] if task.is_regression else [0, 1, 1]
        assert tuple(glue_metrics(name, preds, [1.0, 0.0, 1.0])) == task.metrics


def test_glue_metrics_bad_input():
    with pytest.raises(ValueError, match="unknown GLUE task"):
        glue_metrics("wnli", [1], [1])
    with pytest.raises(ValueError, match="equal length"):
        glue_metrics("rte", [1, 0], [1])
    with pytest.raises(ValueError, match="no predictions"):
        glue_metrics("rte", [], [])


# ---------------------------------------------------------------------------- sentences


@pytest.mark.parametrize(
    "text,expected",
    [
        ("One. Two! Three? four.", ["One.", "Two!", "Three? four."]),
        (
            "Mr. Smith met Mrs. Jones and Dr. Who on St. Mary's road. Then they left.",
            ["Mr. Smith met Mrs. Jones and Dr. Who on St. Mary's road.", "Then they left."],
        ),
        (
            "The U.S. economy grew 3.5 per cent. Prices rose.",
            ["The U.S. economy grew 3.5 per cent.", "Prices rose."],
        ),
        (
            "Fruit, e.g. Apples, i.e. Red ones, etc. Are fine vs. Cars. No. 10 is here.",
            ["Fruit, e.g. Apples, i.e. Red ones, etc. Are fine vs. Cars.", "No. 10 is here."],
        ),
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        (
            'It ended. "Why?" she asked. (It was late.) Yes.',
            ["It ended.", '"Why?" she asked.', "(It was late.)", "Yes."],
        ),
        ("He was born in 1990. 2001 was better.", ["He was born in 1990.", "2001 was better."]),
        (
            "J. K. Rowling wrote it. She said no. Then left.",
            ["J. K. Rowling wrote it.", "She said no.", "Then left."],
        ),
        ("First line\nsecond line.\n\n  Third. ", ["First line", "second line.", "Third."]),
        (
            "we 're close to life . Indications within `` 20 years , '' she said .",
            ["we 're close to life .", "Indications within `` 20 years , '' she said ."],
        ),
        ("", []),
    ],
)
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


# ---------------------------------------------------------------------------- ROUGE


def _f(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def test_rouge_single_pair_by_hand():
    # pred "the cat sat" vs ref "the cat sat down":
    # unigrams: 3 of 3 predicted are in the ref (P=1), 3 of 4 ref ones found (R=3/4)
    # bigrams: "the cat", "cat sat" match; P = 2/2, R = 2/3; LCS = 3 -> same as unigrams
    out = rouge_scores(["the cat sat"], ["the cat sat down"])
    assert out["rouge1"] == pytest.approx(_f(1, 0.75)) == pytest.approx(6 / 7)
    assert out["rouge2"] == pytest.approx(_f(1, 2 / 3)) == pytest.approx(0.8)
    assert out["rougeL"] == pytest.approx(6 / 7)
    assert out["rougeLsum"] == pytest.approx(6 / 7)


def test_rouge_mean_over_pairs_by_hand():
    # second pair: "a dog ran home" vs "the dog went home": unigrams dog, home -> P = R = 1/2;
    # no shared bigram; LCS "dog home" = 2 -> 1/2
    out = rouge_scores(["the cat sat", "a dog ran home"], ["the cat sat down", "the dog went home"])
    assert out == {
        "rouge1": pytest.approx((6 / 7 + 0.5) / 2),
        "rouge2": pytest.approx((0.8 + 0.0) / 2),
        "rougeL": pytest.approx((6 / 7 + 0.5) / 2),
        "rougeLsum": pytest.approx((6 / 7 + 0.5) / 2),
    }


def test_rouge_lsum_uses_sentences():
    # Same two sentences in swapped order. Whole-text LCS is 3 of 6 tokens -> rougeL = 1/2;
    # bigrams: 4 of 5 shared ("sat the" / "ran the" differ) -> 0.8;
    # summary-level LCS matches each reference sentence fully -> rougeLsum = 1.
    out = rouge_scores(["The cat sat. The dog ran."], ["The dog ran. The cat sat."])
    assert out == {
        "rouge1": pytest.approx(1.0),
        "rouge2": pytest.approx(0.8),
        "rougeL": pytest.approx(0.5),
        "rougeLsum": pytest.approx(1.0),
    }


def test_rouge_stemmer():
    # Porter stems: cats -> cat, running -> run, runs -> run
    assert rouge_scores(["cats running"], ["cat runs"])["rouge1"] == pytest.approx(1.0)
    assert rouge_scores(["cats running"], ["cat runs"], use_stemmer=False)["rouge1"] == 0.0


def test_rouge_bad_input():
    with pytest.raises(ValueError, match="references"):
        rouge_scores(["a"], [])
    with pytest.raises(ValueError, match="no predictions"):
        rouge_scores([], [])
