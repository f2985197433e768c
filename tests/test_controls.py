"""Control experiments: the pipeline finds a planted signal and finds nothing where there is none.

Every control is two-sided: each negative control (no signal, shuffled training labels) has
a positive one on the same data beside it (a planted signal, the labels left in place), so
a pipeline that learns nothing fails too. The runs call what the DVC stages call
(finseq.pipeline's `run_prepare` ... `run_evaluate`) in a temporary project directory and
read metrics/eval.json, as `dvc repro` would. One run cannot: shuffling each walk-forward
fold's training labels apart from the other folds' needs the pipeline's in-memory calls
(`run_pipeline`). Margins below come from repeated runs over several seeds; the
observed values are quoted beside each bound.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import ROOT, default_params_dict, merge, tiny_params_dict

from finseq import pipeline
from finseq.artifacts import ARRAYS, PreparedData
from finseq.evaluate import pooled_metrics
from finseq.inputs import load_series
from finseq.labels import to_classes
from finseq.params import Params, load_params, parse_params
from finseq.paths import EVAL_METRICS, PREPARED_DIR
from finseq.provenance import array_hash
from finseq.split import TRAIN
from finseq.synthetic import synthetic_ohlcv

pytestmark = pytest.mark.slow


def synthetic_csvs(n_series: int, n_bars: int, seed: int, **kwargs: float) -> dict:
    """File name -> generated OHLCV frame with its Date column, as a CSV would hold it."""
    return {
        f"series_{index}.csv": synthetic_ohlcv(n_bars, seed + index, **kwargs)
        for index in range(n_series)
    }


@contextlib.contextmanager
def one_thread_in(directory: Path):
    previous_dir, threads = Path.cwd(), torch.get_num_threads()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(previous_dir)
        torch.set_num_threads(threads)


def run_stages(
    directory: Path, csvs: dict, raw_params: dict, shuffle_seed: int | None = None
) -> dict:
    """prepare → window → train → evaluate through the stages' `main` in `directory`, on
    one CPU thread in one process; returns metrics/eval.json's `test` section.

    `csvs` maps file names to frames (written under data/raw) or to existing CSV paths
    (copied). With `shuffle_seed`, data/prepared's labels are permuted among the holdout
    fold's training samples between window and train; val and test labels are untouched.
    """
    raw_dir = directory / "data" / "raw"
    raw_dir.mkdir(parents=True)
    for name, source in csvs.items():
        if isinstance(source, pd.DataFrame):
            source.to_csv(raw_dir / name, index=False)
        else:
            shutil.copy(source, raw_dir / name)
    raw_params = merge(
        raw_params, {"train": {"device": "cpu", "threads": 1, "fold_workers": 1, "seeds": 1}}
    )
    raw_params["data"]["files"] = [f"data/raw/{name}" for name in csvs]
    (directory / "params.yaml").write_text(yaml.safe_dump(raw_params))
    with one_thread_in(directory):
        params = load_params()
        pipeline.run_prepare(params)
        pipeline.run_window(params)
        if shuffle_seed is not None:
            data = PreparedData.load(PREPARED_DIR)
            assert data.fold_names == ["holdout"]
            shuffled = permute_train_labels(data, "holdout", shuffle_seed)
            # Saved as prepare would save it, with its own content hash (every load checks
            # it), and windowed again (the same window ends: labels decide none).
            meta = {key: value for key, value in shuffled.meta.items() if key != "content_hash"}
            arrays = ((name, getattr(shuffled, name)) for name in ARRAYS)
            meta["content_hash"] = array_hash(arrays, meta)
            dataclasses.replace(shuffled, meta=meta).save(PREPARED_DIR)
            pipeline.run_window(params)
        pipeline.run_train(params)
        pipeline.run_evaluate(params)
        return json.loads(Path(EVAL_METRICS).read_text())["test"]


def permute_train_labels(data: PreparedData, fold: str, seed: int) -> PreparedData:
    """`fold`'s training labels shuffled among its training samples; every other label,
    its val and test labels included, untouched."""
    index = data.fold_index(fold)
    train_samples = np.flatnonzero(data.samples[index] & (data.parts[index] == TRAIN))
    labels = data.labels.copy()
    labels[train_samples] = np.random.default_rng(seed).permutation(labels[train_samples])
    return dataclasses.replace(data, labels=labels)


def run_pipeline(frames: dict, params: Params, shuffle_seed: int | None = None) -> dict:
    """prepare → window → train → evaluate on CPU through the pipeline's in-memory calls;
    returns the pooled out-of-sample (test) metrics of every scored fold.

    One torch thread, so the quoted values do not depend on the runner's core count.
    """
    data = pipeline.prepare(params, frames)
    windows = pipeline.window(params, data)
    device = torch.device("cpu")
    classes = to_classes(data.labels)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    scores = []
    try:
        for fold in data.meta["evaluated_folds"]:
            training = (
                data if shuffle_seed is None else permute_train_labels(data, fold, shuffle_seed)
            )
            model, _ = pipeline.train_fold(params, training, windows, fold, device)
            scores.append(pipeline.score_fold(params, model, data, windows, fold, device))
    finally:
        torch.set_num_threads(threads)
    metrics = pooled_metrics(scores, classes, "test")
    return metrics


# Walk-forward controls use 3 folds from 40% of the history on, to keep the suite short.
SPLITS = {
    "holdout": {"method": "holdout"},
    "walk_forward": {"method": "walk_forward", "oos_start": 0.4, "folds": 3},
}


def control_params(**overrides: dict) -> dict:
    """Tiny settings for the synthetic controls: short windows, one small recurrent layer."""
    base = {
        "label": {"method": "triple_barrier", "horizon": 5, "threshold": 0.8, "vol_window": 20},
        "split": {"embargo": 5, "method": "holdout"},
        "window": {"seq_len": 20},
        "model": {"hidden_dim": 16, "num_layers": 1, "dropout": 0.0},
        "train": {
            "epochs": 10,
            "batch_size": 128,
            "patience": 3,
            "learning_rate": 0.003,
            "seed": 0,
        },
    }
    return tiny_params_dict(**merge(base, overrides))


# The planted-signal series: a +/-1 drift regime of half the one-bar volatility that
# persists ~50 bars (persistence 0.98), so the last 20 bars reveal the regime and the
# regime sets the sign of the next 5 bars' return. fixed_horizon labels that sign
# directly; triple_barrier would add the generator's random High/Low wicks, which
# carry no regime information (lstm test skill at seeds 0 and 1: 0.107 and 0.079 with
# triple_barrier, 0.201 and 0.177 with fixed_horizon).
PLANTED_SIGNAL = {"drift": 0.005, "persistence": 0.98}
PLANTED_LABEL = {"method": "fixed_horizon", "threshold": 0.3}
N_SERIES, N_BARS = 8, 3000

# Bounds chosen from repeated runs (values in each test). Seed s means train.seed = s and
# synthetic_ohlcv seeds 100 s .. 100 s + 7 (shuffled labels: permutation seed s); the tests
# run seed 0. NO_SIGNAL_SKILL_BOUND is about twice the largest skill seen on i.i.d. returns
# (0.018), SHUFFLED_SKILL_BOUND the largest seen with shuffled labels (0.013) plus half the
# gap to the smallest seen with them in place (0.032), PLANTED_SKILL_BOUND under half the
# smallest seen with a signal (0.112), ACCURACY_TOLERANCE four times the largest accuracy
# shortfall of lstm or gru against linear (0.005).
NO_SIGNAL_SKILL_BOUND = 0.04
SHUFFLED_SKILL_BOUND = 0.02
PLANTED_SKILL_BOUND = 0.05
ACCURACY_TOLERANCE = 0.02


@pytest.mark.parametrize(("model_type", "split"), [("lstm", "holdout"), ("lstm", "walk_forward")])
def test_no_signal_control_gives_no_test_skill(tmp_path, model_type, split):
    """i.i.d. returns of constant volatility: a clearly positive skill could only be leakage.

    Labels use the repository's triple_barrier settings. Observed test skill, seeds 0-3:
    lstm +0.009 .. +0.018, gru +0.008 .. +0.013; walking forward, lstm +0.009 .. +0.013.
    Not 0: the barriers are set by the trailing volatility known at t, so how often a label is
    0 depends on whether recent bars were calm, which the features see (fixed_horizon
    labels, which have the same width: +0.004 and +0.007 at seeds 0 and 1). With sma_20
    computed by a centred window (a leak), seed 0 reached 0.193 (lstm) and 0.204 (gru). Its
    positive control is the planted signal below: the same generator, seeds and settings
    with a drift regime added.
    """
    csvs = synthetic_csvs(N_SERIES, N_BARS, seed=0, drift=0.0)
    params = control_params(model={"type": model_type}, split=SPLITS[split])
    metrics = run_stages(tmp_path, csvs, params)
    assert metrics["samples"] > 3000
    assert metrics["skill"] < NO_SIGNAL_SKILL_BOUND


@pytest.fixture(scope="module")
def planted_signal_csvs() -> dict:
    return synthetic_csvs(N_SERIES, N_BARS, seed=0, **PLANTED_SIGNAL)


@pytest.fixture(scope="module")
def linear_on_planted_signal(planted_signal_csvs, tmp_path_factory) -> dict:
    params = control_params(label=PLANTED_LABEL, model={"type": "linear"})
    return run_stages(tmp_path_factory.mktemp("linear"), planted_signal_csvs, params)


@pytest.mark.parametrize("model_type", ["lstm", "gru"])
def test_planted_signal_is_learned_and_matches_the_linear_baseline(
    tmp_path, model_type, planted_signal_csvs, linear_on_planted_signal
):
    """A pattern the past bars reveal must show up as clearly positive test skill.

    Observed, seeds 0-9: skill lstm 0.112 .. 0.201, gru 0.114 .. 0.198, linear 0.107 .. 0.192
    (fixed_horizon labels, so no change with the triple-barrier tie rule: seed 0 still 0.201,
    0.198 and 0.192);
    accuracy minus linear accuracy: lstm -0.005 .. +0.007, gru -0.004 .. +0.006. The
    linear model sees ret_20, ret_60 and macd of the last bar, which reveal the regime
    too, so the recurrent models match it rather than beat it.
    """
    params = control_params(label=PLANTED_LABEL, model={"type": model_type})
    metrics = run_stages(tmp_path, planted_signal_csvs, params)
    assert metrics["skill"] > PLANTED_SKILL_BOUND
    assert linear_on_planted_signal["skill"] > PLANTED_SKILL_BOUND
    assert metrics["accuracy"] >= linear_on_planted_signal["accuracy"] - ACCURACY_TOLERANCE


def test_planted_signal_is_learned_walking_forward(tmp_path, planted_signal_csvs):
    """The same planted signal, found out of sample in the pooled walk-forward test blocks.

    Observed, seeds 0-3: lstm skill 0.138 .. 0.177 (seed 0 now: 0.167).
    """
    params = control_params(
        label=PLANTED_LABEL, model={"type": "lstm"}, split=SPLITS["walk_forward"]
    )
    metrics = run_stages(tmp_path, planted_signal_csvs, params)
    assert metrics["samples"] > 10_000
    assert metrics["skill"] > PLANTED_SKILL_BOUND
    assert metrics["skill_low"] > 0
    assert metrics["skill_p"] < 0.01


def real_data_params(model_type: str, split: str) -> dict:
    """The repository's data, label and split settings, with a small quick model."""
    return merge(
        default_params_dict(),
        {
            "split": SPLITS[split],
            "model": {"type": model_type, "hidden_dim": 8, "num_layers": 1, "dropout": 0.0},
            "train": {
                "epochs": 5,
                "batch_size": 128,
                "patience": 3,
                "learning_rate": 0.003,
                "seed": 0,
            },
            "evaluate": {"resamples": 200},
        },
    )


@pytest.mark.parametrize("model_type", ["lstm"])
def test_shuffled_training_labels_give_no_test_skill_and_the_same_run_unshuffled_does(
    tmp_path, model_type
):
    """The repository's data, label and split settings (holdout) with the training labels
    permuted, beside the same run with them in place.

    Any skill must come from the link between windows and their labels; with that link cut
    in training, nothing is left to learn. Observed test skill, seeds 0-7: lstm -0.014 ..
    +0.009, gru -0.006 .. +0.009 shuffled; seeds 0-2: lstm 0.035 .. 0.060, gru 0.051 .. 0.064
    in place (seed 0 now: lstm +0.008 and +0.040, gru +0.001 and +0.066). The bound sits
    between them.
    """
    raw = real_data_params(model_type, "holdout")
    csvs = {Path(path).name: ROOT / path for path in raw["data"]["files"]}
    shuffled = run_stages(tmp_path / "shuffled", csvs, raw, shuffle_seed=0)
    learned = run_stages(tmp_path / "in_place", csvs, raw)
    assert shuffled["samples"] == learned["samples"] > 1000
    assert shuffled["skill"] < SHUFFLED_SKILL_BOUND < learned["skill"]


def test_shuffled_training_labels_give_no_skill_walking_forward_and_in_place_they_do():
    """Each fold's training labels shuffled apart from the other folds' (its val and test
    labels not), through the library functions the stages call: one labels file cannot hold
    a different shuffle per fold. Walking forward (3 folds), seeds 0-3: lstm -0.013 ..
    +0.013 shuffled, 0.032 .. 0.049 in place (seed 0 now: +0.005 and +0.048).
    """
    params = parse_params(real_data_params("lstm", "walk_forward"))
    frames = {path: load_series(ROOT / path) for path in params.data.files}
    shuffled = run_pipeline(frames, params, shuffle_seed=0)
    learned = run_pipeline(frames, params)
    assert shuffled["samples"] == learned["samples"] > 1000
    assert shuffled["skill"] < SHUFFLED_SKILL_BOUND < learned["skill"]


# --- what the model knows: a volatility regime without direction, a drift regime with it ---
# The repository's own params (default_params_dict: label, split, window, model, train,
# evaluate with its calibration, backtest), one seed on one thread, on 2 generated series of
# 2500 bars: a planted regime the past bars reveal.
KNOWS_SERIES, KNOWS_BARS = 2, 2500


def default_run(directory: Path, **generator: float) -> dict:
    csvs = synthetic_csvs(KNOWS_SERIES, KNOWS_BARS, seed=0, **generator)
    # Generated bars end before the default data's lockbox date, which would seal nothing.
    return run_stages(directory, csvs, merge(default_params_dict(), {"split": {"lockbox": None}}))


def test_a_volatility_regime_without_drift_gives_move_skill_and_no_claim_of_direction(tmp_path):
    """Volatility three times higher in a hidden regime that persists ~50 bars, no drift:
    whether the price leaves the barrier band is predictable, which way is not. With the
    default calibration the direction skill's interval holds 0: neither a false claim of
    direction skill nor a confidently wrong direction. Observed at seed 0: move skill +0.053
    [+0.022, +0.084], direction skill -0.005 [-0.017, +0.005] (the volatility baseline's move
    skill: +0.156); with the move part recalibrated on val too (move_direction), move skill
    -0.078 [-0.161, -0.004]."""
    metrics = default_run(tmp_path, volatility_ratio=3.0)
    assert metrics["move_skill_low"] > 0
    assert metrics["direction_skill_low"] <= 0 <= metrics["direction_skill_high"]


def test_a_drift_regime_gives_direction_skill(tmp_path):
    """The planted drift regime of the signal controls above: the direction is predictable."""
    metrics = default_run(tmp_path, **PLANTED_SIGNAL)
    assert metrics["direction_skill_low"] > 0
