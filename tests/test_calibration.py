"""Calibrations fit on generated windows whose truth is known, and the calibration figures
on examples worked by hand."""

import numpy as np
import pandas as pd
import pytest

from finseq.calibration import (
    CALIBRATION_METHODS,
    Calibration,
    brier_decomposition,
    calibrated_probabilities,
    expected_calibration_error,
    fit_calibration,
    reliability_frame,
    softmax,
)

DOWN, FLAT, UP = 0, 1, 2


def draw_classes(probabilities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One class per row, drawn from that row's probabilities."""
    uniform = rng.random(len(probabilities))[:, None]
    return np.minimum((uniform > np.cumsum(probabilities, axis=1)).sum(axis=1), 2)


def logits_of(move: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Logits (flat at 0) whose log((p_up + p_down) / p_flat) is `move` and whose
    log(p_up / p_down) is `direction`."""
    down = move - np.logaddexp(0.0, direction)
    return np.stack([down, np.zeros_like(move), down + direction], axis=1)


def move_direction_windows(windows: int, direction_truth: float, seed: int):
    """Windows whose move logit is the truth and whose direction logit is confident
    (spread 3, leaning up): P(up | move) = sigmoid(direction_truth * d), so a
    direction_truth of 0 makes the direction a coin toss the model does not know."""
    rng = np.random.default_rng(seed)
    move = rng.normal(0.0, 1.5, windows)
    direction = rng.normal(1.0, 3.0, windows)
    moved = rng.random(windows) < 1.0 / (1.0 + np.exp(-move))
    up = rng.random(windows) < 1.0 / (1.0 + np.exp(-direction_truth * direction))
    classes = np.where(moved, np.where(up, UP, DOWN), FLAT)
    return logits_of(move, direction), classes


def direction_loss(probabilities: np.ndarray, classes: np.ndarray) -> float:
    """Cross-entropy of P(up | move) on the windows that moved."""
    moved = classes != FLAT
    up_given_move = probabilities[moved, UP] / (
        probabilities[moved, UP] + probabilities[moved, DOWN]
    )
    return float(-np.mean(np.log(np.where(classes[moved] == UP, up_given_move, 1 - up_given_move))))


def rate_loss(rate: float, classes: np.ndarray) -> float:
    """Cross-entropy of a constant P(up | move) = rate on the windows that moved."""
    up = classes[classes != FLAT] == UP
    return float(-np.mean(np.where(up, np.log(rate), np.log(1 - rate))))


def test_temperature_recovers_the_temperature_the_classes_were_drawn_with():
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 2.0, (20_000, 3))
    classes = draw_classes(softmax(logits / 2.0), rng)
    calibration = fit_calibration("temperature", logits, classes)
    assert calibration.temperature == pytest.approx(2.0, abs=0.08)
    assert calibration == Calibration(temperature=calibration.temperature)
    # At the minimum the loss's derivative in T is 0: the mean logit the calibrated
    # probabilities expect equals the mean logit of the classes that happened.
    expected_logit = np.sum(softmax(logits / calibration.temperature) * logits, axis=1)
    happened_logit = logits[np.arange(len(classes)), classes]
    assert np.mean(expected_logit - happened_logit) == pytest.approx(0.0, abs=1e-6)
    calibrated = calibrated_probabilities(calibration, logits)
    np.testing.assert_allclose(calibrated, softmax(logits / calibration.temperature), atol=1e-15)


def test_move_direction_falls_back_to_the_base_rate_when_the_direction_is_noise():
    logits, classes = move_direction_windows(20_000, direction_truth=0.0, seed=1)
    calibration = fit_calibration("move_direction", logits, classes)
    # The move logit is the truth: its recalibration is about the identity.
    assert calibration.move_slope == pytest.approx(1.0, abs=0.05)
    assert calibration.move_intercept == pytest.approx(0.0, abs=0.05)
    # The direction logits (spread 3) know nothing: a slope of 1 would move P(up | move)
    # from 0.05 to 0.95; the fitted one moves it by a few hundredths at most.
    assert 0.0 <= calibration.direction_slope < 0.02
    probabilities = calibrated_probabilities(calibration, logits)
    moved = classes != FLAT
    base_rate = np.mean(classes[moved] == UP)
    up_given_move = probabilities[moved, UP] / (1 - probabilities[moved, FLAT])
    assert np.mean(np.abs(up_given_move - base_rate)) < 0.02
    assert direction_loss(probabilities, classes) <= rate_loss(base_rate, classes) + 1e-6
    assert direction_loss(softmax(logits), classes) > rate_loss(base_rate, classes) + 0.5

    test_logits, test_classes = move_direction_windows(20_000, direction_truth=0.0, seed=2)
    test_probabilities = calibrated_probabilities(calibration, test_logits)
    prior_loss = rate_loss(base_rate, test_classes)
    assert direction_loss(test_probabilities, test_classes) <= prior_loss + 1e-3
    assert direction_loss(softmax(test_logits), test_classes) > prior_loss + 0.5


def test_direction_recalibrates_which_way_and_leaves_will_it_move_as_the_model_gives_it():
    """`direction`: move_direction's direction fit, the move part the identity: P(flat) is
    the softmax's, and P(up | move) falls back to the base rate where the logits are noise."""
    logits, classes = move_direction_windows(20_000, direction_truth=0.0, seed=1)
    both = fit_calibration("move_direction", logits, classes)
    calibration = fit_calibration("direction", logits, classes)
    assert calibration == Calibration(
        direction_slope=both.direction_slope, direction_intercept=both.direction_intercept
    )
    probabilities = calibrated_probabilities(calibration, logits)
    np.testing.assert_allclose(probabilities[:, FLAT], softmax(logits)[:, FLAT], rtol=1e-12)
    moved = classes != FLAT
    base_rate = np.mean(classes[moved] == UP)
    assert direction_loss(probabilities, classes) <= rate_loss(base_rate, classes) + 1e-6


def test_move_direction_keeps_a_direction_the_model_knows():
    logits, classes = move_direction_windows(20_000, direction_truth=0.5, seed=3)
    calibration = fit_calibration("move_direction", logits, classes)
    assert calibration.direction_slope == pytest.approx(0.5, abs=0.05)
    assert calibration.direction_intercept == pytest.approx(0.0, abs=0.1)


def test_move_direction_gives_a_direction_the_model_has_backwards_the_base_rate():
    logits, classes = move_direction_windows(20_000, direction_truth=-0.5, seed=3)
    calibration = fit_calibration("move_direction", logits, classes)
    assert calibration.direction_slope == 0.0
    moved = classes != FLAT
    base_rate = np.mean(classes[moved] == UP)
    probabilities = calibrated_probabilities(calibration, logits)
    up_given_move = probabilities[moved, UP] / (1 - probabilities[moved, FLAT])
    np.testing.assert_allclose(up_given_move, base_rate, atol=1e-4)


def test_move_direction_recombines_the_two_parts_as_the_formula_says():
    calibration = Calibration(
        move_slope=0.5, move_intercept=0.2, direction_slope=2.0, direction_intercept=-0.1
    )
    logits = np.array([[0.3, -1.2, 2.0], [-4.0, 1.0, -3.5]])
    p = softmax(logits)
    move = np.log((p[:, UP] + p[:, DOWN]) / p[:, FLAT])
    direction = np.log(p[:, UP] / p[:, DOWN])
    p_move = 1 / (1 + np.exp(-(0.5 * move + 0.2)))
    up_given_move = 1 / (1 + np.exp(-(2.0 * direction - 0.1)))
    expected = np.stack([p_move * (1 - up_given_move), 1 - p_move, p_move * up_given_move], 1)
    np.testing.assert_allclose(calibrated_probabilities(calibration, logits), expected, rtol=1e-12)


def test_slopes_of_one_and_intercepts_of_zero_recombine_to_softmax():
    logits = np.random.default_rng(4).normal(0.0, 3.0, (500, 3))
    just_off_identity = Calibration(move_slope=np.nextafter(1.0, 2.0))
    assert just_off_identity.recalibrates_move_and_direction()
    np.testing.assert_allclose(
        calibrated_probabilities(just_off_identity, logits), softmax(logits), rtol=1e-12, atol=1e-15
    )


def test_none_is_the_identity_bit_for_bit():
    logits = np.random.default_rng(5).normal(0.0, 3.0, (300, 3))
    classes = np.random.default_rng(6).integers(0, 3, 300)
    calibration = fit_calibration("none", logits, classes)
    assert calibration == Calibration()
    assert calibrated_probabilities(calibration, logits).tobytes() == softmax(logits).tobytes()


def windows_of_every_kind(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, (400, 3))
    return logits, draw_classes(softmax(logits), rng)


@pytest.mark.parametrize("method", CALIBRATION_METHODS)
def test_rows_sum_to_one(method):
    logits, classes = windows_of_every_kind(7)
    calibration = fit_calibration(method, logits, classes)
    test_logits, _ = windows_of_every_kind(8)
    probabilities = calibrated_probabilities(calibration, test_logits)
    assert probabilities.dtype == np.float64
    assert probabilities.min() >= 0
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=0, atol=1e-12)


EXTREME_LOGITS = np.array(
    [
        [1e6, -1e6, 0.0],
        [-1e300, 1e300, 1e300],
        [0.0, 0.0, 0.0],
        [800.0, 800.0, -800.0],
        [-1e308, -1e308, 1e308],
        [3e38, -3e38, 1.0],
    ]
)


@pytest.mark.parametrize("method", CALIBRATION_METHODS)
def test_extreme_logits_give_finite_probabilities_and_a_finite_fit(method):
    classes = np.array([0, 1, 2, 1, 0, 2])
    calibration = fit_calibration(method, EXTREME_LOGITS, classes)
    assert np.all(np.isfinite(list(calibration.as_dict().values())))
    for fitted in (calibration, Calibration(temperature=0.01), Calibration(move_slope=0.0)):
        probabilities = calibrated_probabilities(fitted, EXTREME_LOGITS)
        assert np.all(np.isfinite(probabilities))
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=0, atol=1e-12)


def test_extreme_logits_keep_their_obvious_probabilities():
    slopes = Calibration(move_slope=2.0, direction_slope=0.5)
    probabilities = calibrated_probabilities(slopes, EXTREME_LOGITS[:2])
    np.testing.assert_array_equal(probabilities[0], [1.0, 0.0, 0.0])
    # p_flat = p_up = 1/2 before; m = log(1) = 0 → P(move) 1/2; d huge → P(up | move) 1.
    np.testing.assert_allclose(probabilities[1], [0.0, 0.5, 0.5], atol=1e-15)


def test_a_part_with_one_outcome_falls_back_to_slope_zero_and_the_smoothed_base_rate():
    logits = np.random.default_rng(9).normal(0.0, 2.0, (6, 3))
    # Nothing flat: P(move) = (6 + 1) / (6 + 2).
    calibration = fit_calibration("move_direction", logits, np.array([2, 2, 0, 2, 2, 0]))
    assert calibration.move_slope == 0.0
    assert calibration.move_intercept == pytest.approx(np.log(7.0))
    # The 4 moves all up: P(up | move) = (4 + 1) / (4 + 2).
    only_up = fit_calibration("move_direction", logits, np.array([2, 2, 1, 2, 2, 1]))
    assert only_up.direction_slope == 0.0
    assert only_up.direction_intercept == pytest.approx(np.log(5.0))
    # Nothing moved: P(move) = 1 / 8, and the direction has no window: P(up | move) = 1/2.
    all_flat = fit_calibration("move_direction", logits, np.ones(6, dtype=np.int64))
    assert (all_flat.move_slope, all_flat.direction_slope) == (0.0, 0.0)
    assert all_flat.move_intercept == pytest.approx(np.log(1 / 7))
    assert all_flat.direction_intercept == 0.0
    probabilities = calibrated_probabilities(all_flat, logits)
    np.testing.assert_allclose(probabilities, np.tile([1 / 16, 7 / 8, 1 / 16], (6, 1)))


@pytest.mark.parametrize("windows", [0, 1, 2])
@pytest.mark.parametrize("method", CALIBRATION_METHODS)
def test_a_tiny_val_part_still_fits(method, windows):
    logits = np.array([[0.5, -1.0, 2.0], [3.0, 0.0, -2.0]])[:windows]
    classes = np.array([2, 0])[:windows]
    calibration = fit_calibration(method, logits, classes)
    assert np.all(np.isfinite(list(calibration.as_dict().values())))
    assert calibration.temperature > 0
    probabilities = calibrated_probabilities(calibration, np.array([[1.0, 2.0, 3.0]]))
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(), 1.0)


def test_two_windows_that_separate_the_direction_keep_a_finite_slope():
    logits = np.array([[0.5, -1.0, 2.0], [3.0, 0.0, -2.0]])
    calibration = fit_calibration("move_direction", logits, np.array([2, 0]))
    # d = 1.5 (up) and -5 (down); Platt's targets 2/3 and 1/3 are met exactly when
    # 1.5 a + b = log 2 and -5 a + b = -log 2.
    slope = 2 * np.log(2) / 6.5
    assert calibration.direction_slope == pytest.approx(slope, rel=1e-5)
    assert calibration.direction_intercept == pytest.approx(np.log(2) - 1.5 * slope, rel=1e-5)


@pytest.mark.parametrize("method", CALIBRATION_METHODS)
def test_fitting_reads_its_arrays_without_writing_them_and_is_deterministic(method):
    logits, classes = windows_of_every_kind(10)
    logits.flags.writeable = False
    classes.flags.writeable = False
    before = (logits.tobytes(), classes.tobytes())
    first = fit_calibration(method, logits, classes)
    second = fit_calibration(method, logits.copy(), classes.copy())
    assert (logits.tobytes(), classes.tobytes()) == before
    assert first.as_dict() == second.as_dict()
    test_logits, _ = windows_of_every_kind(11)
    assert (
        calibrated_probabilities(first, test_logits).tobytes()
        == calibrated_probabilities(second, test_logits).tobytes()
    )


def test_a_calibration_is_a_dict_of_floats_and_back():
    calibration = Calibration(1.5, 0.25, -0.5, 0.0, 0.125)
    recorded = calibration.as_dict()
    assert recorded == {
        "temperature": 1.5,
        "move_slope": 0.25,
        "move_intercept": -0.5,
        "direction_slope": 0.0,
        "direction_intercept": 0.125,
    }
    assert all(type(value) is float for value in recorded.values())
    assert Calibration.from_dict(recorded) == calibration
    with pytest.raises(TypeError):
        Calibration.from_dict({**recorded, "slope": 1.0})


def test_an_unknown_method_or_an_unknown_label_is_refused():
    logits = np.zeros((2, 3))
    with pytest.raises(ValueError, match="platt"):
        fit_calibration("platt", logits, np.array([0, 1]))
    with pytest.raises(ValueError, match="unknown label"):
        fit_calibration("temperature", logits, np.array([0, -1]))


# Four windows, forecasts equal within each bin of 2 (so Murphy's identity holds exactly):
#   down: .2 .2 .7 .7  happened 0 1 1 0  bins [.2, .5] [.7, .5]  overall .5
#   flat: .2 .2 .2 .2  happened 0 0 0 1  bin  [.2, .25]          overall .25
#   up:   .6 .6 .1 .1  happened 1 0 0 0  bins [.6, .5] [.1, 0]   overall .25
HAND_PROBABILITIES = np.array([[0.2, 0.2, 0.6], [0.2, 0.2, 0.6], [0.7, 0.2, 0.1], [0.7, 0.2, 0.1]])
HAND_CLASSES = np.array([UP, DOWN, DOWN, FLAT])


def test_brier_score_by_hand():
    probabilities = np.array([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    # (.2² + .5² + .3²) = .38 for a flat window; (.9² + .1² + .8²) = 1.46 for a down one.
    brier = brier_decomposition(probabilities, np.array([FLAT, DOWN]))["brier"]
    assert brier == pytest.approx((0.38 + 1.46) / 2, abs=1e-15)


def test_murphy_terms_by_hand():
    terms = brier_decomposition(HAND_PROBABILITIES, HAND_CLASSES, bins=2)
    # reliability: down .5·.3² + .5·.2², flat .05², up .5·.1² + .5·.1²
    assert terms["reliability"] == pytest.approx(0.065 + 0.0025 + 0.01, abs=1e-15)
    # resolution: only up's bins differ from its overall frequency, by .25 each
    assert terms["resolution"] == pytest.approx(0.0625, abs=1e-15)
    assert terms["uncertainty"] == pytest.approx(0.25 + 0.1875 + 0.1875, abs=1e-15)
    # brier per window: .24, 1.04, .14, 1.14
    assert terms["brier"] == pytest.approx(0.64, abs=1e-15)
    assert terms["within_bin"] == pytest.approx(0.0, abs=1e-15)


def test_murphy_identity_holds_exactly_for_forecasts_equal_within_their_bins():
    # Each class's four values fall in four different tenths.
    forecasts = np.array([[0.05, 0.15, 0.8], [0.25, 0.35, 0.4], [0.45, 0.5, 0.05], [0.7, 0.2, 0.1]])
    rng = np.random.default_rng(12)
    picked = rng.integers(0, 4, 5_000)
    classes = rng.integers(0, 3, 5_000)
    terms = brier_decomposition(forecasts[picked], classes)
    murphy = terms["reliability"] - terms["resolution"] + terms["uncertainty"]
    assert murphy == pytest.approx(terms["brier"], abs=1e-14)
    assert terms["within_bin"] == pytest.approx(0.0, abs=1e-15)


def test_the_within_bin_term_closes_the_identity_for_any_forecasts():
    logits, classes = windows_of_every_kind(13)
    terms = brier_decomposition(softmax(logits), classes, bins=5)
    murphy = terms["reliability"] - terms["resolution"] + terms["uncertainty"]
    assert abs(terms["brier"] - murphy) > 1e-4
    assert murphy + terms["within_bin"] == pytest.approx(terms["brier"], abs=1e-14)


def test_classwise_ece_by_hand():
    # down .5·|.2 - .5| + .5·|.7 - .5|; flat |.2 - .25|; up .5·|.6 - .5| + .5·|.1 - 0|
    ece = expected_calibration_error(HAND_PROBABILITIES, HAND_CLASSES, bins=2)
    assert ece == pytest.approx((0.25 + 0.05 + 0.1) / 3, abs=1e-15)


def test_a_forecast_of_one_falls_in_the_last_bin():
    probabilities = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    classes = np.array([DOWN, FLAT])
    assert expected_calibration_error(probabilities, classes) == 0.0
    frame = reliability_frame(probabilities, classes)
    assert frame[frame["class"] == "down"]["bin"].tolist() == [0, 9]


def test_reliability_frame_by_hand():
    frame = reliability_frame(HAND_PROBABILITIES, HAND_CLASSES, bins=2)
    expected = pd.DataFrame(
        {
            "class": ["down", "down", "flat", "up", "up"],
            "bin": [0, 1, 0, 0, 1],
            "predicted": [0.2, 0.7, 0.2, 0.1, 0.6],
            "realised": [0.5, 0.5, 0.25, 0.0, 0.5],
            "windows": [2, 2, 4, 2, 2],
        }
    )
    pd.testing.assert_frame_equal(frame, expected, check_exact=False, rtol=1e-14)


# --- the stage: each model's calibrations fit on its own val windows, never its test ones ----


@pytest.mark.slow
def test_each_saved_model_holds_every_method_fit_on_its_val_windows_and_never_its_test_ones(
    tmp_path,
):
    """fold_calibrations on a tiny trained fold: every method, fit on the val windows' logits
    and labels (recomputed here); relabelling or rewriting the fold's test windows changes
    none of them, relabelling its val windows does. A calibration fit on test windows
    (a planted leak) fails the second check."""
    import dataclasses

    import torch
    from conftest import tiny_params

    from finseq import pipeline
    from finseq.models import predict_logits
    from finseq.saving import fold_calibrations
    from finseq.synthetic import synthetic_ohlcv

    files = []
    for index in range(2):
        files.append(str(tmp_path / f"s{index}.csv"))
        synthetic_ohlcv(900, 40 + index, volatility_ratio=3.0).to_csv(files[-1], index=False)
    params = tiny_params(
        data={"files": files, "workers": 1}, split={"method": "holdout", "train": 0.6, "val": 0.2}
    )
    data = pipeline.prepare(params)
    windows = pipeline.window(params, data)
    model, _ = pipeline.train_fold(params, data, windows, "holdout", torch.device("cpu"))
    fitted = fold_calibrations(model, data, windows, "holdout", params.train)
    assert set(fitted) == set(CALIBRATION_METHODS)
    val = windows.ends["holdout"]["val"]
    logits = predict_logits(
        model,
        torch.as_tensor(data.scaled_features("holdout")),
        torch.as_tensor(val),
        windows.seq_len,
        len(val),
        params.train.precision,
    ).numpy()
    classes = data.labels[val].astype(np.int64) + 1
    for method in CALIBRATION_METHODS:
        expected = fit_calibration(method, logits.astype(np.float64), classes).as_dict()
        assert fitted[method] == pytest.approx(expected, rel=1e-6), method

    test = windows.ends["holdout"]["test"]
    labels, features = data.labels.copy(), data.features.copy()
    labels[test] = np.where(labels[test] == 0, 1, 0)
    features[test] *= 3.0
    other_test = dataclasses.replace(data, labels=labels, features=features)
    assert fold_calibrations(model, other_test, windows, "holdout", params.train) == fitted
    labels = data.labels.copy()
    labels[val] = np.where(labels[val] == 0, 1, 0)
    other_val = dataclasses.replace(data, labels=labels)
    refit = fold_calibrations(model, other_val, windows, "holdout", params.train)
    assert refit["move_direction"] != fitted["move_direction"]
    assert refit["temperature"] != fitted["temperature"]
