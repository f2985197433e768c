"""Predicted probabilities → metrics, beside the baselines any model must beat; the
out-of-sample predictions table, from which every test figure is computed.

Baselines, both fit on the training labels only (in walk-forward, on the training
windows of the fold whose model scored the window):
  - class prior: predicts the training class frequencies for every sample; its
    cross-entropy is `prior_loss`. `skill = 1 - loss / prior_loss` is > 0 only when
    the model knows more than the class balance.
  - majority: always predicts the most frequent training class; `majority_accuracy`.

`skill` is split in two parts that say what the model knows (docs/pipeline.md, "Skill,
split"), each against its own part of the same prior:
  - move: "will the price leave the barrier band", flat against not flat. `move_skill` =
    1 - binary cross-entropy of P(not flat) / that of the prior's P(not flat), over every
    window of known label: a skill at volatility.
  - direction: "which way", up against down among the windows whose label is not flat.
    `direction_skill` = 1 - cross-entropy of P(up) / (P(up) + P(down)) / that of the prior's
    up share, over those windows only: a skill at direction.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd

from finseq.calibration import softmax
from finseq.labels import CLASS_LABELS, NUM_CLASSES, UNKNOWN_LABEL, to_classes


def class_prior(train_classes: np.ndarray) -> np.ndarray:
    """Training class frequencies with add-one smoothing, so no class has probability 0."""
    counts = np.bincount(train_classes, minlength=NUM_CLASSES).astype(np.float64)
    return (counts + 1) / (counts.sum() + NUM_CLASSES)


def cross_entropy(probabilities: np.ndarray, classes: np.ndarray) -> float:
    picked = probabilities[np.arange(len(classes)), classes]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, None))))


def confusion_matrix(classes: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """counts[true, predicted]."""
    return np.bincount(classes * NUM_CLASSES + predicted, minlength=NUM_CLASSES**2).reshape(
        NUM_CLASSES, NUM_CLASSES
    )


def balanced_accuracy(classes: np.ndarray, predicted: np.ndarray) -> float:
    """Mean recall over the classes present in `classes`."""
    counts = confusion_matrix(classes, predicted)
    support = counts.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(counts)[present] / support[present]))


def macro_f1(classes: np.ndarray, predicted: np.ndarray) -> float:
    """Mean F1 over the classes that occur in `classes` or in `predicted`."""
    counts = confusion_matrix(classes, predicted)
    true_positive = np.diag(counts).astype(np.float64)
    actual, guessed = counts.sum(axis=1), counts.sum(axis=0)
    present = (actual + guessed) > 0
    f1 = 2 * true_positive[present] / (actual[present] + guessed[present])
    return float(np.mean(f1))


FLAT = CLASS_LABELS.index(0)
DOWN, UP = CLASS_LABELS.index(-1), CLASS_LABELS.index(1)


def _log(values: np.ndarray) -> np.ndarray:
    return np.log(np.clip(values, 1e-12, None))


def move_losses(probabilities: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Per window, the binary cross-entropy of flat against not flat."""
    flat = probabilities[:, FLAT]
    return -np.where(classes == FLAT, _log(flat), _log(1.0 - flat))


def direction_losses(probabilities: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Per window, the cross-entropy of up against down given a move, P(up) / (P(up) +
    P(down)); NaN where the label is flat (no direction to score)."""
    up, down = probabilities[:, UP], probabilities[:, DOWN]
    share_up = up / np.clip(up + down, 1e-12, None)
    loss = -np.where(classes == UP, _log(share_up), _log(1.0 - share_up))
    return np.where(classes == FLAT, np.nan, loss)


def skill_parts(
    probabilities: np.ndarray, classes: np.ndarray, priors: np.ndarray
) -> dict[str, float | int]:
    """`move_*` and `direction_*` figures of some windows: their probabilities and each one's
    fold prior, both (windows, 3). A part with no window to score (no move among them) is
    NaN."""
    moved = classes != FLAT
    move, move_prior = move_losses(probabilities, classes), move_losses(priors, classes)
    figures: dict[str, float | int] = {
        "move_loss": float(np.mean(move)),
        "move_prior_loss": float(np.mean(move_prior)),
        "move_skill": 1.0 - float(np.sum(move) / np.sum(move_prior)),
        "direction_samples": int(moved.sum()),
    }
    if moved.any():
        direction = direction_losses(probabilities, classes)[moved]
        direction_prior = direction_losses(priors, classes)[moved]
        figures["direction_loss"] = float(np.mean(direction))
        figures["direction_prior_loss"] = float(np.mean(direction_prior))
        figures["direction_skill"] = 1.0 - float(np.sum(direction) / np.sum(direction_prior))
    else:
        figures.update(direction_loss=np.nan, direction_prior_loss=np.nan, direction_skill=np.nan)
    return figures


def classification_metrics(
    probabilities: np.ndarray,
    classes: np.ndarray,
    prior_p: np.ndarray,
    majority: np.ndarray,
    priors: np.ndarray | None = None,
) -> dict[str, float | int]:
    """Every class figure of some windows: their probabilities (windows, 3), their classes
    0..2, the prior probability of each one's class (`prior_p`) and each one's majority
    class, both from the training windows of the fold that scored it; with each one's whole
    prior (`priors`, windows x 3), skill's move and direction parts too."""
    predicted = probabilities.argmax(axis=1)
    loss = cross_entropy(probabilities, classes)
    prior_loss = float(-np.mean(np.log(np.clip(prior_p, 1e-12, None))))
    figures = {
        "samples": len(classes),
        "loss": loss,
        "accuracy": float(np.mean(predicted == classes)),
        "balanced_accuracy": balanced_accuracy(classes, predicted),
        "macro_f1": macro_f1(classes, predicted),
        "prior_loss": prior_loss,
        "majority_accuracy": float(np.mean(classes == majority)),
        "skill": 1.0 - loss / prior_loss,
    }
    if priors is not None:
        figures.update(skill_parts(probabilities, classes, priors))
    return figures


def split_metrics(
    logits: np.ndarray, classes: np.ndarray, prior: np.ndarray
) -> dict[str, float | int]:
    """All metrics of one split from its logits; `classes` are class indices 0..2, `prior`
    from class_prior: one for every sample (3,), or each sample's own (samples, 3) when folds
    are pooled."""
    probabilities = softmax(logits)
    priors = np.broadcast_to(prior, probabilities.shape)
    prior_p = priors[np.arange(len(classes)), classes]
    return classification_metrics(probabilities, classes, prior_p, priors.argmax(axis=1), priors)


def confusion_csv(classes: np.ndarray, predicted: np.ndarray) -> str:
    """One `actual,predicted` row of labels per sample: the input of DVC's confusion template."""
    labels = np.asarray(CLASS_LABELS)
    rows = np.char.add(np.char.add(labels[classes].astype(str), ","), labels[predicted].astype(str))
    return "\n".join(["actual,predicted", *rows.tolist()]) + "\n"


@dataclass(frozen=True)
class FoldScores:
    """One fold's model on its own windows: end rows and logits per part, and its prior;
    optionally its test probabilities after calibration, the volatility baseline's P(flat)
    and the volatility regime of each test window."""

    fold: str
    ends: dict[str, np.ndarray]  # part name -> end rows
    logits: dict[str, np.ndarray]  # part name -> (windows, 3) logits
    prior: np.ndarray  # class_prior of the fold's training windows
    test_probabilities: np.ndarray | None = None  # (windows, 3); softmax(logits) when None
    volatility_p_flat: np.ndarray | None = None  # (windows,) the volatility baseline's P(flat)
    regime: np.ndarray | None = None  # (windows,) low / mid / high trailing volatility

    def probabilities(self) -> np.ndarray:
        """The test probabilities the fold is judged on."""
        if self.test_probabilities is not None:
            return self.test_probabilities
        return softmax(self.logits["test"])

    def test_column(self, values: np.ndarray | None, fill: float | str) -> np.ndarray:
        """`values`, or `fill` for each test window when the fold has none."""
        if values is not None:
            return values
        return np.full(
            len(self.ends["test"]), fill, dtype=object if isinstance(fill, str) else float
        )


def pooled_metrics(scores: list[FoldScores], classes: np.ndarray, part: str) -> dict:
    """Metrics of `part` over every fold's windows, each beside its own fold's baselines.
    Windows of unknown label (class < 0, see labels.UNKNOWN_LABEL) are left out."""
    logits = np.concatenate([score.logits[part] for score in scores])
    ends = np.concatenate([score.ends[part] for score in scores])
    priors = np.concatenate(
        [np.broadcast_to(score.prior, (len(score.ends[part]), NUM_CLASSES)) for score in scores]
    )
    known = classes[ends] >= 0
    return split_metrics(logits[known], classes[ends][known], priors[known])


PREDICTION_COLUMNS = (
    "timestamp",
    "series",
    "fold",
    "label",
    "p_down",
    "p_flat",
    "p_up",
    "prior_p",
    "majority",
    "prior_down",
    "prior_flat",
    "prior_up",
    "volatility_p_flat",
    "regime",
    "forward_return",
    "next_return",
)
PROBABILITY_COLUMNS = ["p_down", "p_flat", "p_up"]
PRIOR_COLUMNS = ["prior_down", "prior_flat", "prior_up"]


def predictions_frame(
    scores: list[FoldScores],
    labels: np.ndarray,
    series_names: list[str],
    series: np.ndarray,
    timestamps: np.ndarray,
    forward_return: np.ndarray,
    next_return: np.ndarray,
) -> pd.DataFrame:
    """Every out-of-sample window: when, which series and fold, its label, the three
    probabilities, its fold's baselines (the prior probability of its label, the majority
    label, the whole prior, and the volatility baseline's P(flat)), its volatility regime,
    and the returns a position decided at its last bar would see. A window of unknown label
    has an empty `label` and `prior_p`."""
    ends = np.concatenate([score.ends["test"] for score in scores])
    probabilities = np.concatenate([score.probabilities() for score in scores])
    known = labels[ends] != UNKNOWN_LABEL
    classes = np.where(known, to_classes(labels[ends]), 0)
    priors = np.concatenate(
        [np.broadcast_to(score.prior, (len(score.ends["test"]), NUM_CLASSES)) for score in scores]
    )
    return pd.DataFrame(
        {
            "timestamp": pd.DatetimeIndex(timestamps[ends]).strftime("%Y-%m-%dT%H:%M:%S"),
            "series": np.asarray(series_names)[series[ends]],
            "fold": np.concatenate([[score.fold] * len(score.ends["test"]) for score in scores]),
            "label": pd.Series(labels[ends].astype(np.int64), dtype="Int64").mask(~known).array,
            "p_down": probabilities[:, 0],
            "p_flat": probabilities[:, 1],
            "p_up": probabilities[:, 2],
            "prior_p": np.where(known, priors[np.arange(len(classes)), classes], np.nan),
            "majority": np.asarray(CLASS_LABELS)[priors.argmax(axis=1)],
            "prior_down": priors[:, DOWN],
            "prior_flat": priors[:, FLAT],
            "prior_up": priors[:, UP],
            "volatility_p_flat": np.concatenate(
                [score.test_column(score.volatility_p_flat, np.nan) for score in scores]
            ),
            "regime": np.concatenate([score.test_column(score.regime, "") for score in scores]),
            "forward_return": forward_return[ends],
            "next_return": next_return[ends],
        },
        columns=list(PREDICTION_COLUMNS),
    )


def predictions_csv(frame: pd.DataFrame) -> str:
    """metrics/predictions.csv: 8 significant digits, enough for every figure built on it."""
    return frame.to_csv(index=False, float_format="%.8g", lineterminator="\n")


def read_predictions(text: str) -> pd.DataFrame:
    """The predictions table as metrics/predictions.csv records it: what evaluate computes
    every test figure from, and what the report reads at each revision."""
    return pd.read_csv(io.StringIO(text))


def recorded_predictions(frame: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """metrics/predictions.csv's text, and the table it records (probabilities and returns
    at its 8 significant digits), so that every figure evaluate writes is the figure any
    reader of the file computes, to the last bit."""
    text = predictions_csv(frame)
    return text, read_predictions(text)


def _known(table: pd.DataFrame) -> pd.DataFrame:
    """The windows of a known label: a window of unknown label is traded, never scored."""
    return table[table["label"].notna()]


def table_metrics(table: pd.DataFrame) -> dict[str, float | int]:
    """Every class figure of a predictions table's windows of known label, each beside the
    baselines of the fold that scored it (prior_p, majority; and the move and direction
    parts where the table has the whole prior, as tables since issue 25 do)."""
    known = _known(table)
    has_priors = set(PRIOR_COLUMNS) <= set(known.columns)
    return classification_metrics(
        known[PROBABILITY_COLUMNS].to_numpy(),
        to_classes(known["label"].to_numpy()),
        known["prior_p"].to_numpy(),
        to_classes(known["majority"].to_numpy()),
        known[PRIOR_COLUMNS].to_numpy() if has_priors else None,
    )


def volatility_baseline_table(table: pd.DataFrame) -> pd.DataFrame:
    """The predictions table as the volatility baseline would have written it: P(flat) from
    volatility alone, the rest split by the fold's prior share of up among up and down.
    Its direction skill is 0 by construction; its move skill is what volatility knows."""
    baseline = table.copy()
    p_flat = table["volatility_p_flat"].to_numpy()
    share_up = table["prior_up"] / (table["prior_up"] + table["prior_down"])
    baseline["p_flat"] = p_flat
    baseline["p_up"] = (1.0 - p_flat) * share_up.to_numpy()
    baseline["p_down"] = (1.0 - p_flat) * (1.0 - share_up.to_numpy())
    return baseline


FOLD_FIGURES = (
    "samples",
    "skill",
    "move_skill",
    "direction_skill",
    "loss",
    "prior_loss",
    "accuracy",
    "majority_accuracy",
    "balanced_accuracy",
)


def fold_metrics(table: pd.DataFrame) -> dict[str, dict]:
    """Each fold's test-block figures and its period (every test window, unknown labels
    too), for the `folds.*` keys."""
    figures = {}
    for fold, rows in table.groupby("fold", sort=False):
        test = table_metrics(rows)
        figures[fold] = {
            "first_date": rows["timestamp"].min()[:10],
            "last_date": rows["timestamp"].max()[:10],
            **{key: test[key] for key in FOLD_FIGURES},
        }
    return figures


def table_confusion_csv(table: pd.DataFrame) -> str:
    """metrics/confusion_test.csv of a predictions table's windows of known label."""
    known = _known(table)
    probabilities = known[PROBABILITY_COLUMNS].to_numpy()
    return confusion_csv(to_classes(known["label"].to_numpy()), probabilities.argmax(axis=1))
