"""Metrics and baselines on hand-computed examples."""

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from finseq.evaluate import (
    FoldScores,
    balanced_accuracy,
    class_prior,
    confusion_csv,
    confusion_matrix,
    cross_entropy,
    fold_metrics,
    macro_f1,
    pooled_metrics,
    predictions_csv,
    predictions_frame,
    recorded_predictions,
    softmax,
    split_metrics,
    table_confusion_csv,
    table_metrics,
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
    totals = daily_totals(
        written, threshold=0.0, long_only=False, cost_bps=0.0, hold=1, sizing="sign"
    )
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
        FoldScores(
            "f1",
            {"test": np.array([0])},
            {"test": logits[:1]},
            np.array([0.2, 0.3, 0.5]),
            volatility_p_flat=np.array([0.25]),
            regime=np.array(["low"], dtype=object),
        ),
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
        "timestamp,series,fold,label,p_down,p_flat,p_up,prior_p,majority,prior_down,prior_flat,"
        "prior_up,volatility_p_flat,regime,forward_return,next_return",
        "2020-01-02T00:00:00,sp500,f1,1,0.12345679,0.3,0.57654321,0.5,1,0.2,0.3,0.5,0.25,low,"
        "0.012345679,0.001",
        # A fold without the volatility baseline's P(flat) or a regime leaves both empty.
        "2020-01-03T14:30:00,sp500,f2,-1,0.6,0.3,0.1,0.5,-1,0.5,0.3,0.2,,,-0.5,",
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


def test_softmax_shifts_each_row_by_its_own_maximum():
    """A logit of 1000 would overflow exp() unshifted, or shifted the wrong way; a row of
    small logits beside it would underflow to 0 / 0 if shifted by the largest of all rows."""
    logits = np.array([[1000.0, 0.0, 0.0], [0.0, np.log(2), np.log(5)]])
    np.testing.assert_allclose(softmax(logits), [[1.0, 0.0, 0.0], [1 / 8, 2 / 8, 5 / 8]])


def test_macro_f1_counts_a_class_that_occurs_once():
    """Class 1 is true once and never guessed: its F1 of 0 is in the mean."""
    assert macro_f1(np.array([0, 1]), np.array([0, 0])) == pytest.approx((2 / 3 + 0) / 2)


def test_split_metrics_returns_every_figure_under_its_name():
    """The scored labels 2, 2, 1, 2 and guesses 2, 2, 1, 0 of the hand example above:
    recall 1 (class 1) and 2/3 (class 2); F1 0 (class 0, guessed once), 1 and 4/5."""
    prior = np.array([4 / 7, 2 / 7, 1 / 7])
    probabilities = np.array(
        [[0.25, 0.25, 0.5], [0.125, 0.125, 0.75], [0.25, 0.5, 0.25], [0.5, 0.25, 0.25]]
    )
    metrics = split_metrics(np.log(probabilities), np.array([2, 2, 1, 2]), prior)
    loss = -(np.log(0.5) + np.log(0.75) + np.log(0.5) + np.log(0.25)) / 4
    prior_loss = -(3 * np.log(1 / 7) + np.log(2 / 7)) / 4
    # Move: P(not flat) 0.75, 0.875, 0.75 for the ups, P(flat) 0.5 for the flat; the prior's
    # 5/7 and 2/7. Direction, of the three ups: up's share of up + down 2/3, 6/7, 1/3; the
    # prior's 1/5.
    move_loss = -(2 * np.log(0.75) + np.log(0.875) + np.log(0.5)) / 4
    move_prior_loss = -(3 * np.log(5 / 7) + np.log(2 / 7)) / 4
    direction_loss = -(np.log(2 / 3) + np.log(6 / 7) + np.log(1 / 3)) / 3
    direction_prior_loss = -np.log(1 / 5)
    assert metrics == pytest.approx(
        {
            "move_loss": move_loss,
            "move_prior_loss": move_prior_loss,
            "move_skill": 1 - move_loss / move_prior_loss,
            "direction_samples": 3,
            "direction_loss": direction_loss,
            "direction_prior_loss": direction_prior_loss,
            "direction_skill": 1 - direction_loss / direction_prior_loss,
            "samples": 4,
            "loss": loss,
            "accuracy": 0.75,
            "balanced_accuracy": (1 + 2 / 3) / 2,
            "macro_f1": (0 + 1 + 0.8) / 3,
            "prior_loss": prior_loss,
            "majority_accuracy": 0.0,
            "skill": 1 - loss / prior_loss,
        }
    )


def test_confusion_csv_writes_one_row_of_labels_per_window():
    text = confusion_csv(np.array([0, 2, 1]), np.array([2, 2, 0]))
    assert text == "actual,predicted\n-1,1\n1,1\n0,-1\n"


def test_fold_metrics_by_hand_with_a_window_of_unknown_label():
    """The period spans every test window, the unknown one too; the figures count the
    three known ones, class 0 (label -1) included, against the fold's own prior. Figures
    come from the predictions table as recorded (these probabilities are exact in 8 digits)."""
    logits = np.log([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8], [0.25, 0.25, 0.5], [0.5, 0.25, 0.25]])
    score = FoldScores(
        "f2", {"test": np.array([0, 1, 2, 3])}, {"test": logits}, np.array([0.5, 0.3, 0.2])
    )
    labels = np.array([-1, UNKNOWN_LABEL, 1, 0], dtype=np.int8)
    timestamps = np.array(
        ["2020-03-02T00:00", "2020-01-15T00:00", "2020-06-30T14:30", "2020-04-01T00:00"],
        dtype="datetime64[ns]",
    )
    frame = predictions_frame(
        [score], labels, ["a"], np.zeros(4, dtype=int), timestamps, np.zeros(4), np.zeros(4)
    )
    _, table = recorded_predictions(frame)
    loss = 4 * np.log(2) / 3
    prior_loss = -(np.log(0.5) + np.log(0.2) + np.log(0.3)) / 3
    figures = fold_metrics(table)["f2"]
    assert (figures.pop("first_date"), figures.pop("last_date")) == ("2020-01-15", "2020-06-30")
    # Move: the down and the up 0.75 not flat, the flat 0.25; the prior's 0.7 and 0.3.
    # Direction: up's share 1/3 (the down) and 2/3 (the up); the prior's 2/7.
    move = -(2 * np.log(0.75) + np.log(0.25))
    move_prior = -(2 * np.log(0.7) + np.log(0.3))
    direction = -2 * np.log(2 / 3)
    direction_prior = -(np.log(5 / 7) + np.log(2 / 7))
    assert figures == pytest.approx(
        {
            "samples": 3,
            "skill": 1 - loss / prior_loss,
            "move_skill": 1 - move / move_prior,
            "direction_skill": 1 - direction / direction_prior,
            "loss": loss,
            "prior_loss": prior_loss,
            "accuracy": 2 / 3,
            "majority_accuracy": 1 / 3,
            "balanced_accuracy": 2 / 3,
        }
    )


def test_fold_metrics_keep_the_folds_apart_in_their_order():
    """Two folds, each scored against its own prior: fold b's windows never enter fold a's
    figures, and the folds come out in the table's order."""
    prior_a, prior_b = np.array([0.5, 0.3, 0.2]), np.array([0.1, 0.3, 0.6])
    scores = [
        FoldScores("b", {"test": np.array([0])}, {"test": np.zeros((1, 3))}, prior_b),
        FoldScores("a", {"test": np.array([1, 2])}, {"test": np.zeros((2, 3))}, prior_a),
    ]
    frame = predictions_frame(
        scores,
        np.array([1, -1, 1], dtype=np.int8),
        ["s"],
        np.zeros(3, dtype=int),
        np.array(["2020-01-01", "2020-01-02", "2020-01-03"], dtype="datetime64[ns]"),
        np.zeros(3),
        np.zeros(3),
    )
    figures = fold_metrics(recorded_predictions(frame)[1])
    assert list(figures) == ["b", "a"]
    assert figures["b"]["prior_loss"] == pytest.approx(-np.log(0.6))
    assert figures["a"]["prior_loss"] == pytest.approx(-(np.log(0.5) + np.log(0.2)) / 2)
    assert (figures["b"]["samples"], figures["a"]["samples"]) == (1, 2)


def test_table_metrics_are_the_split_metrics_of_the_probabilities_as_recorded():
    """Pooled test figures come from the probabilities and priors as the CSV records them
    (8 significant digits), worked out by hand here; they are not the full-precision
    figures, which no reader of the CSV could reproduce."""
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(40, 3))
    prior = np.array([0.3, 0.3, 0.4])
    labels = rng.integers(-1, 2, size=40).astype(np.int8)
    frame = predictions_frame(
        [FoldScores("f1", {"test": np.arange(40)}, {"test": logits}, prior)],
        labels,
        ["s"],
        np.zeros(40, dtype=int),
        np.datetime64("2020-01-01") + np.arange(40).astype("timedelta64[D]"),
        np.zeros(40),
        np.zeros(40),
    )
    _, table = recorded_predictions(frame)
    recorded = table[["p_down", "p_flat", "p_up"]].to_numpy()
    classes = labels.astype(np.int64) + 1
    picked = recorded[np.arange(40), classes]
    figures = table_metrics(table)
    assert figures["loss"] == pytest.approx(-np.mean(np.log(picked)), rel=1e-14)
    assert figures["prior_loss"] == pytest.approx(-np.mean(np.log(prior[classes])), rel=1e-8)
    assert figures["accuracy"] == np.mean(recorded.argmax(axis=1) == classes)
    full = split_metrics(logits, classes, prior)
    assert figures["loss"] != full["loss"] and figures["loss"] == pytest.approx(full["loss"])


def test_the_confusion_matrix_of_a_table_counts_known_windows_by_their_argmax():
    logits = np.log([[0.6, 0.2, 0.2], [0.1, 0.1, 0.8], [0.2, 0.5, 0.3]])
    frame = predictions_frame(
        [FoldScores("f1", {"test": np.arange(3)}, {"test": logits}, np.full(3, 1 / 3))],
        np.array([1, UNKNOWN_LABEL, 0], dtype=np.int8),
        ["s"],
        np.zeros(3, dtype=int),
        np.array(["2020-01-01", "2020-01-02", "2020-01-03"], dtype="datetime64[ns]"),
        np.zeros(3),
        np.zeros(3),
    )
    assert table_confusion_csv(recorded_predictions(frame)[1]) == "actual,predicted\n1,-1\n0,0\n"


def test_predictions_csv_writes_an_unknown_labels_prior_empty_and_every_float_in_8_digits():
    """prior_p 2/7 and tiny returns in %.8g (lower-case exponent); the unknown window's
    label and prior_p empty."""
    logits = np.log(np.array([[0.2, 0.3, 0.5], [0.1, 0.6, 0.3]]))
    prior = np.array([4 / 7, 2 / 7, 1 / 7])
    scores = [FoldScores("f1", {"test": np.array([0, 1])}, {"test": logits}, prior)]
    frame = predictions_frame(
        scores,
        np.array([0, UNKNOWN_LABEL], dtype=np.int8),
        ["a"],
        np.array([0, 0]),
        np.array(["2020-01-02", "2020-01-03"], dtype="datetime64[ns]"),
        np.array([1.5e-7, -2e-9]),
        np.array([0.001, 0.002]),
    )
    assert predictions_csv(frame).split("\n")[1:] == [
        "2020-01-02T00:00:00,a,f1,0,0.2,0.3,0.5,0.28571429,-1,0.57142857,0.28571429,0.14285714,,,"
        "1.5e-07,0.001",
        "2020-01-03T00:00:00,a,f1,,0.1,0.6,0.3,,-1,0.57142857,0.28571429,0.14285714,,,-2e-09,0.002",
        "",
    ]


def test_the_committed_runs_headline_is_its_seed_ensembles_not_any_one_seeds():
    """metrics/eval.json: test.* are the ensemble's (each fold's seeds' probabilities
    averaged), so no seed's own figures equal them, and the ensemble's log loss is no
    higher than the mean of its seeds' (log loss is convex); the ensemble's training noise
    is the seeds' spread over the square root of their number."""
    metrics = json.loads((Path(__file__).parents[1] / "metrics" / "eval.json").read_text())
    spread = metrics["seeds"]
    seeds = [spread[f"s{42 + offset}"] for offset in range(spread["count"])]
    assert len(seeds) > 1
    assert all(seed["loss"] != metrics["test"]["loss"] for seed in seeds)
    assert metrics["test"]["loss"] <= np.mean([seed["loss"] for seed in seeds])
    for name in ("skill", "move_skill", "direction_skill", "sharpe"):
        assert spread[f"{name}_ensemble_sd"] == pytest.approx(
            spread[f"{name}_sd"] / np.sqrt(spread["count"])
        )
