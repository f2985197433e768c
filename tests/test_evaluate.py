"""Metrics and baselines on hand-computed examples."""

import io

import numpy as np
import pandas as pd
import pytest

from finseq.evaluate import (
    FoldScores,
    balanced_accuracy,
    class_prior,
    confusion_matrix,
    cross_entropy,
    macro_f1,
    pooled_metrics,
    predictions_csv,
    predictions_frame,
    split_metrics,
)
from finseq.evidence import daily_totals
from finseq.labels import UNKNOWN_LABEL


def test_class_prior_is_smoothed_training_frequency():
    prior = class_prior(np.array([0, 0, 0, 2]))
    assert prior.tolist() == pytest.approx([4 / 7, 1 / 7, 2 / 7])


def test_confusion_balanced_accuracy_and_macro_f1_by_hand():
    actual = np.array([0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 1, 1, 1, 0, 2])
    assert confusion_matrix(actual, predicted).tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert balanced_accuracy(actual, predicted) == pytest.approx((0.5 + 1 + 0.5) / 3)
    # F1 per class: 2TP / (actual + predicted) = 2/4, 4/5, 2/3.
    assert macro_f1(actual, predicted) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


def test_a_model_that_outputs_the_prior_has_zero_skill():
    prior = class_prior(np.array([0, 1, 1, 2, 2, 2]))
    classes = np.array([2, 1, 0, 2])
    logits = np.log(np.tile(prior, (len(classes), 1)))
    metrics = split_metrics(logits, classes, prior)
    assert metrics["skill"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["loss"] == pytest.approx(metrics["prior_loss"])
    assert metrics["majority_accuracy"] == 0.5
    assert metrics["samples"] == 4


def test_a_confident_correct_model_has_positive_skill_and_a_wrong_one_negative():
    prior = np.array([1 / 3, 1 / 3, 1 / 3])
    classes = np.array([0, 1, 2, 1])
    right = np.eye(3)[classes] * 4.0
    wrong = np.eye(3)[(classes + 1) % 3] * 4.0
    good = split_metrics(right, classes, prior)
    bad = split_metrics(wrong, classes, prior)
    assert good["accuracy"] == 1.0 and good["skill"] > 0.9
    assert bad["accuracy"] == 0.0 and bad["skill"] < 0


def test_pooled_folds_score_each_window_against_its_own_folds_baselines():
    """Fold a's training says 'down' is common, fold b's says 'up': each window's prior loss
    and majority guess come from its own fold, never from the pooled or scored labels."""
    prior_a, prior_b = np.array([0.5, 0.3, 0.2]), np.array([0.1, 0.3, 0.6])
    classes = np.array([0, 2, 2, 0, 1])  # rows 0-1 scored by fold a, rows 2-4 by fold b
    uniform = np.zeros((2, 3))
    scores = [
        FoldScores("a", {"test": np.array([0, 1])}, {"test": uniform}, prior_a),
        FoldScores("b", {"test": np.array([2, 3, 4])}, {"test": np.zeros((3, 3))}, prior_b),
    ]
    pooled = pooled_metrics(scores, classes, "test")
    # Fold a: labels 0 and 2 against prior_a; fold b: labels 2, 0, 1 against prior_b.
    expected_prior_loss = -np.mean(np.log([0.5, 0.2, 0.6, 0.1, 0.3]))
    assert pooled["prior_loss"] == pytest.approx(expected_prior_loss)
    # Majority: "down" (class 0) for fold a, "up" (class 2) for fold b: rows 0 and 2 right.
    assert pooled["majority_accuracy"] == pytest.approx(2 / 5)
    assert pooled["loss"] == pytest.approx(np.log(3))
    assert pooled["samples"] == 5


def test_loss_and_baselines_by_hand_when_the_scored_majority_is_not_the_trainings():
    """Training says 'down' (class 0) is common; the scored labels are mostly 'up' (class 2).

    Each number is worked out by hand, not with the module's own cross_entropy: a
    sign-flipped or rescaled loss, or baselines fit on the scored labels, fail here.
    """
    prior = class_prior(np.array([0, 0, 0, 1]))  # counts 3, 1, 0 -> (4, 2, 1) / 7
    assert prior.tolist() == pytest.approx([4 / 7, 2 / 7, 1 / 7])
    classes = np.array([2, 2, 1, 2])
    probabilities = np.array(
        [[0.25, 0.25, 0.5], [0.125, 0.125, 0.75], [0.25, 0.5, 0.25], [0.5, 0.25, 0.25]]
    )
    metrics = split_metrics(np.log(probabilities), classes, prior)
    # The model's probability of each true class: 0.5, 0.75, 0.5, 0.25.
    loss = -(np.log(0.5) + np.log(0.75) + np.log(0.5) + np.log(0.25)) / 4
    prior_loss = -(3 * np.log(1 / 7) + np.log(2 / 7)) / 4
    assert metrics["loss"] == pytest.approx(loss, rel=1e-12)
    assert metrics["prior_loss"] == pytest.approx(prior_loss, rel=1e-12)
    assert metrics["skill"] == pytest.approx(1 - loss / prior_loss, rel=1e-12)
    # Majority of training is class 0, which no scored label is: 0, not the scored 3 / 4.
    assert metrics["majority_accuracy"] == 0.0
    # The model's guesses (argmax): 2, 2, 1, 0 -> three of four right.
    assert metrics["accuracy"] == 0.75
    assert metrics["samples"] == 4


def test_a_window_of_unknown_label_is_traded_but_in_no_classification_figure():
    """An undecided triple-barrier tie in test (label UNKNOWN_LABEL): predictions.csv keeps
    the window with an empty label and prior_p, the backtest trades it, and the pooled and
    per-date class figures are those of the other windows alone."""
    labels = np.array([1, UNKNOWN_LABEL, -1, 0], dtype=np.int8)
    logits = np.log(np.array([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8], [0.6, 0.2, 0.2], [0.3, 0.4, 0.3]]))
    prior = np.array([0.5, 0.25, 0.25])
    scores = [FoldScores("f1", {"test": np.arange(4)}, {"test": logits}, prior)]
    classes = labels.astype(np.int64) + 1
    pooled = pooled_metrics(scores, classes, "test")
    known = [0, 2, 3]
    assert pooled == split_metrics(logits[known], classes[known], prior)
    assert pooled["samples"] == 3
    dates = np.array(
        ["2020-01-02", "2020-01-02", "2020-01-03", "2020-01-06"], dtype="datetime64[ns]"
    )
    frame = predictions_frame(
        scores, labels, ["a", "b"], np.array([0, 1, 0, 0]), dates, np.zeros(4), np.full(4, 0.01)
    )
    written = pd.read_csv(io.StringIO(predictions_csv(frame)))
    assert written["label"].isna().tolist() == [False, True, False, False]
    assert written["prior_p"].isna().tolist() == [False, True, False, False]
    totals = daily_totals(written, threshold=0.0, long_only=False, cost_bps=0.0)
    assert totals.windows.tolist() == [1, 1, 1]
    assert totals.loss.sum() == pytest.approx(pooled["loss"] * 3)
    assert totals.confusion.sum() == 3
    # Both windows of 2020-01-02 are long (score > 0) and earn 1%: the unknown one too.
    assert totals.strategy[0] == pytest.approx(np.expm1(0.01))


def test_predictions_csv_has_its_columns_in_order_and_eight_significant_digits():
    """The file the report and the evidence read back: exact header, one row per window,
    no index, "\\n" line ends, %.8g floats, ISO timestamps, each window's own majority."""
    logits = np.log(np.array([[0.1234567891, 0.3, 0.5765432109], [0.6, 0.3, 0.1]]))
    scores = [
        FoldScores("f1", {"test": np.array([0])}, {"test": logits[:1]}, np.array([0.2, 0.3, 0.5])),
        FoldScores("f2", {"test": np.array([1])}, {"test": logits[1:]}, np.array([0.5, 0.3, 0.2])),
    ]
    stamps = np.array(["2020-01-02T00:00:00", "2020-01-03T14:30:00"], dtype="datetime64[ns]")
    frame = predictions_frame(
        scores,
        np.array([1, -1], dtype=np.int8),
        ["sp500"],
        np.array([0, 0]),
        stamps,
        np.array([0.0123456789, -0.5]),
        np.array([0.001, np.nan]),
    )
    assert predictions_csv(frame).split("\n") == [
        "timestamp,series,fold,label,p_down,p_flat,p_up,prior_p,majority,forward_return,"
        "next_return",
        "2020-01-02T00:00:00,sp500,f1,1,0.12345679,0.3,0.57654321,0.5,1,0.012345679,0.001",
        "2020-01-03T14:30:00,sp500,f2,-1,0.6,0.3,0.1,0.5,-1,-0.5,",
        "",
    ]


def test_balanced_accuracy_and_macro_f1_count_only_the_classes_that_occur():
    """Class 1 is never true and never predicted: it is in neither mean. A probability of 0
    for the true class costs -log(1e-12), not inf."""
    actual, predicted = np.array([0, 0, 2, 2]), np.array([0, 2, 2, 2])
    assert balanced_accuracy(actual, predicted) == pytest.approx((0.5 + 1.0) / 2)
    # F1: class 0: 2 * 1 / (2 + 1) = 2/3; class 2: 2 * 2 / (2 + 3) = 4/5.
    assert macro_f1(actual, predicted) == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert macro_f1(np.array([1]), np.array([1])) == 1.0
    assert cross_entropy(np.array([[0.0, 1.0, 0.0]]), np.array([0])) == pytest.approx(
        -np.log(1e-12)
    )
