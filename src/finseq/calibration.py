"""Logits → calibrated probabilities, fit on a fold's validation windows and applied to its
test windows; and the calibration figures of any probabilities (Brier decomposition, ECE,
the reliability diagram's table).

A model's skill here lies in "will the price move" (flat vs not) and hardly in "which
way": its up/down split leans away from 50/50 where the truth is 50/50, and scores worse
than the prior. `move_direction` calibrates the two questions apart, each with a slope
that cannot go below 0, so a direction the model does not know falls back to the
validation base rate instead of staying confidently wrong.

Every method is one form with five numbers: the logits divided by `temperature`, then the
move logit m = log((p_up + p_down) / p_flat) and the direction logit d = log(p_up / p_down)
recalibrated as P(move) = sigmoid(move_slope * m + move_intercept) and
P(up | move) = sigmoid(direction_slope * d + direction_intercept). Slope 1, intercept 0
and temperature 1 leave the probabilities as softmax gives them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd
from scipy.special import expit, log_expit, logsumexp

from finseq.errors import DataError
from finseq.labels import NUM_CLASSES, to_classes

CALIBRATION_METHODS = ("none", "temperature", "move_direction", "direction")
# params.yaml's evaluate.calibration, and finseq predict's default (a test keeps them equal).
DEFAULT_CALIBRATION = "direction"
CLASS_NAMES = ("down", "flat", "up")  # class indices 0, 1, 2: labels -1, 0, 1
DOWN, FLAT, UP = 0, 1, 2
# Bounds of log T: T from e^-5 to e^5 (about 1/148 to 148), far beyond any temperature a
# trained model needs.
LOG_TEMPERATURE_BOUNDS = (-5.0, 5.0)
# How far below its row's largest logit a logit is kept: exp(-1e6) is 0 in float64, so no
# probability changes, and no difference of logits (m, d, a row's shift) overflows.
LOGIT_LIMIT = 1e6


@dataclass(frozen=True)
class Calibration:
    """The five numbers of a calibration (see the module docstring); the defaults are the
    identity, which is what `none` fits."""

    temperature: float = 1.0
    move_slope: float = 1.0
    move_intercept: float = 0.0
    direction_slope: float = 1.0
    direction_intercept: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {name: float(value) for name, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, float]) -> Calibration:
        """The calibration `as_dict` recorded; a missing or unknown key raises TypeError."""
        return cls(**{name: float(value) for name, value in values.items()})

    def recalibrates_move_and_direction(self) -> bool:
        identity = Calibration()
        return any(
            getattr(self, field.name) != getattr(identity, field.name)
            for field in fields(self)
            if field.name != "temperature"
        )


# Probabilities as softmax gives them: what `none` fits, and what a model is scored with
# when no calibration is asked for.
IDENTITY = Calibration()


def checkpoint_calibration(checkpoint: dict, model_file: object, method: str) -> Calibration:
    """The calibration `method` fit on the model's own val windows when it was saved."""
    if method == "none":
        return IDENTITY
    if "calibrations" not in checkpoint:
        raise DataError(
            f"{model_file} holds no calibration (saved by an older finseq): run `dvc repro`, "
            "or set evaluate.calibration to none"
        )
    return Calibration.from_dict(checkpoint["calibrations"][method])


def _check(logits: np.ndarray, classes: np.ndarray) -> None:
    if logits.ndim != 2 or logits.shape[1] != NUM_CLASSES or classes.shape != logits.shape[:1]:
        raise ValueError(f"logits {logits.shape} and classes {classes.shape} do not pair up")
    if len(classes) and (classes.min() < 0 or classes.max() >= NUM_CLASSES):
        raise ValueError("classes must be 0..2: leave windows of unknown label out")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities of logits (float64), each row shifted by its own maximum."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def shifted_logits(logits: np.ndarray) -> np.ndarray:
    """The logits less their row's largest, each kept within LOGIT_LIMIT of it: the same
    softmax, and finite however far apart finite logits are."""
    logits = np.asarray(logits, dtype=np.float64)
    with np.errstate(over="ignore"):
        return np.clip(logits - logits.max(axis=1, keepdims=True), -LOGIT_LIMIT, 0.0)


def move_and_direction_logits(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """m = log((p_up + p_down) / p_flat) and d = log(p_up / p_down), from the logits
    themselves (no probability is formed, so no ratio of underflowed numbers)."""
    shifted = shifted_logits(logits)
    move = np.logaddexp(shifted[:, UP], shifted[:, DOWN]) - shifted[:, FLAT]
    return move, shifted[:, UP] - shifted[:, DOWN]


def calibrated_probabilities(calibration: Calibration, logits: np.ndarray) -> np.ndarray:
    """(windows, 3) float64 probabilities, each row summing to 1, finite for any finite
    logits. The identity returns softmax's probabilities bit for bit."""
    logits = np.asarray(logits, dtype=np.float64)
    if calibration == Calibration():
        with np.errstate(over="ignore"):
            return softmax(logits)
    scaled = shifted_logits(logits) / calibration.temperature
    if not calibration.recalibrates_move_and_direction():
        return softmax(scaled)
    move, direction = move_and_direction_logits(scaled)
    move_score = calibration.move_slope * move + calibration.move_intercept
    direction_score = calibration.direction_slope * direction + calibration.direction_intercept
    log_move = log_expit(move_score)
    log_probabilities = np.stack(
        [
            log_move + log_expit(-direction_score),
            log_expit(-move_score),
            log_move + log_expit(direction_score),
        ],
        axis=1,
    )
    probabilities = np.exp(log_probabilities - log_probabilities.max(axis=1, keepdims=True))
    return probabilities / probabilities.sum(axis=1, keepdims=True)


def ensemble_probabilities(members: list[np.ndarray]) -> np.ndarray:
    """The probabilities of an ensemble: the mean of its members' (each calibrated by its
    own fit), summed in member order, so that every path that scores it gets the same bits."""
    total = np.array(members[0], dtype=np.float64)
    for probabilities in members[1:]:
        total += probabilities
    return total / len(members)


def fit_temperature(logits: np.ndarray, classes: np.ndarray) -> float:
    """The T > 0 that minimises the cross-entropy of softmax(logits / T): bounded search
    on log T. With no window there is nothing to fit, and T is 1."""
    if len(classes) == 0:
        return 1.0
    shifted = shifted_logits(logits)
    picked = shifted[np.arange(len(classes)), classes]

    def loss(log_temperature: float) -> float:
        temperature = np.exp(log_temperature)
        return float(np.mean(logsumexp(shifted / temperature, axis=1) - picked / temperature))

    from scipy.optimize import minimize_scalar  # fitting only: finseq predict never fits

    result = minimize_scalar(
        loss, bounds=LOG_TEMPERATURE_BOUNDS, method="bounded", options={"xatol": 1e-10}
    )
    return float(np.exp(result.x))


def smoothed_rate(outcomes: np.ndarray) -> float:
    """Add-one smoothed frequency of True: (k + 1) / (n + 2), 1/2 with no outcome."""
    return (float(np.count_nonzero(outcomes)) + 1.0) / (len(outcomes) + 2.0)


def fit_platt(scores: np.ndarray, outcomes: np.ndarray) -> tuple[float, float]:
    """(slope >= 0, intercept) of P(outcome) = sigmoid(slope * score + intercept), by
    maximum likelihood against Platt's smoothed targets ((k + 1) / (k + 2) for a True,
    1 / (n - k + 2) for a False), which keep the fit finite when the scores separate the
    outcomes. Slope 0 is a constant probability, about the base rate (the mean target); a
    part with one outcome only, or with scores that never vary, gets slope 0 and the
    smoothed base rate."""
    positives = int(np.count_nonzero(outcomes))
    negatives = len(outcomes) - positives
    rate = smoothed_rate(outcomes)
    spread = float(np.std(scores)) if len(scores) else 0.0
    if positives == 0 or negatives == 0 or spread == 0.0:
        return 0.0, float(np.log(rate / (1.0 - rate)))
    targets = np.where(outcomes, (positives + 1.0) / (positives + 2.0), 1.0 / (negatives + 2.0))
    centre = float(np.mean(scores))
    standard = (scores - centre) / spread

    def loss_and_gradient(slope_intercept: np.ndarray) -> tuple[float, np.ndarray]:
        slope, intercept = slope_intercept
        score = slope * standard + intercept
        loss = np.mean(targets * np.logaddexp(0.0, -score) + (1 - targets) * np.logaddexp(0, score))
        residual = expit(score) - targets
        return float(loss), np.array([np.mean(residual * standard), np.mean(residual)])

    from scipy.optimize import minimize  # fitting only: finseq predict never fits

    result = minimize(
        loss_and_gradient,
        x0=np.array([1.0, 0.0]),
        jac=True,
        method="L-BFGS-B",
        bounds=[(0.0, None), (None, None)],
        options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 1000},
    )
    slope, intercept = (float(value) for value in result.x)
    return slope / spread, intercept - slope * centre / spread


def fit_move_direction(logits: np.ndarray, classes: np.ndarray) -> Calibration:
    """Platt fits of the move logit on every window (flat or not) and of the direction
    logit on the windows that moved (up or not)."""
    move, direction = move_and_direction_logits(logits)
    moved = classes != FLAT
    move_slope, move_intercept = fit_platt(move, moved)
    direction_slope, direction_intercept = fit_platt(direction[moved], classes[moved] == UP)
    return Calibration(
        move_slope=move_slope,
        move_intercept=move_intercept,
        direction_slope=direction_slope,
        direction_intercept=direction_intercept,
    )


def fit_calibration(method: str, logits: np.ndarray, classes: np.ndarray) -> Calibration:
    """The calibration `method` fits on some windows (a fold's val part): their (windows, 3)
    logits and their classes 0..2, windows of unknown label already left out."""
    logits = np.asarray(logits, dtype=np.float64)
    classes = np.asarray(classes, dtype=np.int64)
    _check(logits, classes)
    if method == "none":
        return Calibration()
    if method == "temperature":
        return Calibration(temperature=fit_temperature(logits, classes))
    if method == "move_direction":
        return fit_move_direction(logits, classes)
    if method == "direction":
        fitted = fit_move_direction(logits, classes)
        return Calibration(
            direction_slope=fitted.direction_slope,
            direction_intercept=fitted.direction_intercept,
        )
    raise ValueError(f"calibration method {method!r} is not one of {CALIBRATION_METHODS}")


def _binned(probabilities: np.ndarray, classes: np.ndarray, bins: int):
    """Per class: each window's forecast, outcome (0/1) and equal-width bin on [0, 1]
    (a forecast of exactly 1 in the last bin)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    classes = np.asarray(classes, dtype=np.int64)
    _check(probabilities, classes)
    if len(classes) == 0:
        raise ValueError("no window to score")
    for klass in range(NUM_CLASSES):
        forecast = probabilities[:, klass]
        outcome = (classes == klass).astype(np.float64)
        index = np.clip(np.floor(forecast * bins).astype(np.int64), 0, bins - 1)
        yield klass, forecast, outcome, index


def _bin_means(values: np.ndarray, index: np.ndarray, bins: int) -> np.ndarray:
    counts = np.bincount(index, minlength=bins)
    return np.bincount(index, weights=values, minlength=bins) / np.maximum(counts, 1)


def brier_decomposition(
    probabilities: np.ndarray, classes: np.ndarray, bins: int = 10
) -> dict[str, float]:
    """The multi-class Brier score (mean over windows of the sum over classes of
    (p - y)^2) and Murphy's terms, per class on `bins` equal-width bins of that class's
    forecast, summed over classes: `reliability` (how far each bin's mean forecast is from
    its realised frequency, lower is better), `resolution` (how far the bins' frequencies
    spread from the overall one, higher is better), `uncertainty` (the overall
    frequencies' own variance). brier = reliability - resolution + uncertainty holds
    exactly only when the forecasts within each bin are equal; `within_bin` is the rest,
    the within-bin variance of the forecasts less twice their within-bin covariance with
    the outcomes, so that brier = reliability - resolution + uncertainty + within_bin."""
    windows = len(classes)
    totals = dict.fromkeys(("reliability", "resolution", "uncertainty", "within_bin"), 0.0)
    brier = 0.0
    for _, forecast, outcome, index in _binned(probabilities, classes, bins):
        brier += float(np.mean((forecast - outcome) ** 2))
        weight = np.bincount(index, minlength=bins) / windows
        bin_forecast = _bin_means(forecast, index, bins)
        bin_frequency = _bin_means(outcome, index, bins)
        frequency = float(np.mean(outcome))
        totals["reliability"] += float(np.sum(weight * (bin_forecast - bin_frequency) ** 2))
        totals["resolution"] += float(np.sum(weight * (bin_frequency - frequency) ** 2))
        totals["uncertainty"] += frequency * (1.0 - frequency)
        spread = forecast - bin_forecast[index]
        totals["within_bin"] += float(
            np.mean(spread**2 - 2.0 * spread * (outcome - bin_frequency[index]))
        )
    return {"brier": brier, **totals}


def expected_calibration_error(
    probabilities: np.ndarray, classes: np.ndarray, bins: int = 10
) -> float:
    """Classwise ECE: for each class, the mean over `bins` equal-width bins of its forecast,
    weighted by the bins' window counts, of |mean forecast - realised frequency|; then the
    mean over the three classes. Not the top-label ECE, which looks only at the most
    probable class and so never sees how the flat-vs-move split is calibrated."""
    errors = []
    for _, forecast, outcome, index in _binned(probabilities, classes, bins):
        weight = np.bincount(index, minlength=bins) / len(classes)
        gap = _bin_means(forecast, index, bins) - _bin_means(outcome, index, bins)
        errors.append(float(np.sum(weight * np.abs(gap))))
    return float(np.mean(errors))


def reliability_frame(
    probabilities: np.ndarray, classes: np.ndarray, bins: int = 10
) -> pd.DataFrame:
    """The reliability diagram's table: one row per class and equal-width bin that holds
    at least one window, with the bin's mean forecast of that class (`predicted`), how often
    that class happened there (`realised`) and its `windows`."""
    rows = []
    for klass, forecast, outcome, index in _binned(probabilities, classes, bins):
        counts = np.bincount(index, minlength=bins)
        predicted = _bin_means(forecast, index, bins)
        realised = _bin_means(outcome, index, bins)
        for bin_index in np.flatnonzero(counts):
            rows.append(
                (
                    CLASS_NAMES[klass],
                    int(bin_index),
                    float(predicted[bin_index]),
                    float(realised[bin_index]),
                    int(counts[bin_index]),
                )
            )
    return pd.DataFrame(rows, columns=["class", "bin", "predicted", "realised", "windows"])


def table_calibration(table: pd.DataFrame, bins: int = 10) -> tuple[dict[str, float], str]:
    """The calibration figures of a predictions table's windows of known label (`brier`,
    `brier_reliability`, `brier_resolution`, `brier_uncertainty`, `ece`) and the text of
    metrics/reliability.csv (the reliability diagram's table)."""
    known = table[table["label"].notna()]
    probabilities = known[["p_down", "p_flat", "p_up"]].to_numpy()
    classes = to_classes(known["label"].to_numpy().astype(np.int64))
    parts = brier_decomposition(probabilities, classes, bins)
    figures = {
        "brier": parts["brier"],
        **{f"brier_{name}": parts[name] for name in ("reliability", "resolution", "uncertainty")},
        "ece": expected_calibration_error(probabilities, classes, bins),
    }
    frame = reliability_frame(probabilities, classes, bins)
    return figures, frame.to_csv(index=False, float_format="%.8g", lineterminator="\n")
