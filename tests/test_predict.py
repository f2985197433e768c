"""finseq predict and finseq info: no train/serve skew, causal streaming, history notes,
provenance, and a one-line refusal (exit 2, nothing written) for every bad input.

The fast tests train one tiny model in-process on the repository's own raw CSVs; the slow
ones run the real pipeline and commands (`dvc repro`, `dvc get`, the console script).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import ROOT, VENV_BIN, Project, reproduced_project, tiny_params, train_tiny_model
from test_checkpoint_safety import write_malicious

import finseq
from finseq import predict as predict_module
from finseq import predict_inputs
from finseq.artifacts import PreparedData, WindowSets
from finseq.calibration import (
    DEFAULT_CALIBRATION,
    calibrated_probabilities,
    checkpoint_calibration,
    softmax,
)
from finseq.card import model_card
from finseq.checkpoint import load_checkpoint, save_checkpoint
from finseq.errors import DataError
from finseq.features import FEATURE_NAMES, StandardScaler, feature_matrix
from finseq.inputs import load_series, split_sources
from finseq.load import validate_series
from finseq.panel import prepare_dataset
from finseq.predict import PREDICT_BATCH, ModelInputs, Selection, predict
from finseq.provenance import MODEL_SOURCES, file_md5, source_hash
from finseq.runtime import set_numerics
from finseq.synthetic import synthetic_ohlcv, write_long_panel

RAW_FILES = ("data/raw/sp500.csv", "data/raw/nasdaq.csv")
PROBABILITIES = ["p_down", "p_flat", "p_up"]


@dataclasses.dataclass(frozen=True)
class Trained:
    model_file: Path
    data: PreparedData
    windows: WindowSets
    raw: tuple[Path, ...]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A tiny model of the final fold, an ensemble of two seeds, trained on copies of the
    repository's raw CSVs."""
    directory = tmp_path_factory.mktemp("trained")
    raw = tuple(Path(shutil.copy(ROOT / name, directory / Path(name).name)) for name in RAW_FILES)
    model_file = directory / "model.pth"
    data, windows = train_tiny_model(raw, model_file, seeds=2)
    return Trained(model_file=model_file, data=data, windows=windows, raw=raw)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """finseq predict in this process: (exit status, stdout, stderr)."""
    try:
        predict_module.main([str(arg) for arg in args])
        status = 0
    except SystemExit as exc:
        status = exc.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def predict_ok(capsys, *args: str) -> str:
    """finseq predict that must succeed: its stdout."""
    status, stdout, stderr = run_cli(capsys, *args)
    assert status == 0, stderr
    return stdout


def read_predictions(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, parse_dates=["timestamp"])


def as_float32(frame: pd.DataFrame) -> np.ndarray:
    return frame[PROBABILITIES].to_numpy().astype(np.float32)


def in_prepared_order(predicted: pd.DataFrame, data: PreparedData, ends: np.ndarray):
    """`predicted` rows matched one to one with the prepared rows `ends` (series, timestamp)."""
    names = np.asarray(data.meta["series_names"])[data.series[ends]]
    keys = pd.DataFrame({"series": names, "timestamp": data.timestamps[ends]})
    matched = keys.merge(predicted, on=["series", "timestamp"], how="left", validate="1:1")
    assert len(predicted) == len(ends) and not matched["p_up"].isna().any()
    return matched


def pipeline_logits(
    model_file: Path, data: PreparedData, member: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The pipeline's data scored by a path that shares no code with finseq predict's: the
    prepared matrix scaled by the model fold's scaler, each window a NumPy slice of it, the
    forward of the checkpoint's `member`-th seed's module (0: the first, whose weights are at
    the top) in batches of PREDICT_BATCH (the last padded with its last window, as predict
    pads), under torch's own bf16 autocast when the checkpoint trained in bf16.
    Returns (end rows, float32 logits)."""
    set_numerics(torch.device("cpu"))
    model, checkpoint = load_checkpoint(model_file)
    if member:
        model.load_state_dict(checkpoint["ensemble"][member - 1]["state_dict"])
    seq_len = checkpoint["seq_len"]
    series = np.asarray(data.series)
    first_of_series = np.r_[True, series[1:] != series[:-1]]
    position = np.arange(len(series)) - np.maximum.accumulate(
        np.where(first_of_series, np.arange(len(series)), 0)
    )
    ends = np.flatnonzero(position >= seq_len - 1)
    features = data.scaled_features(data.meta["model_fold"])
    windows = np.stack([features[end - seq_len + 1 : end + 1] for end in ends])
    bf16 = checkpoint["params"]["train"]["precision"] == "bf16"
    chunks = []
    with torch.no_grad():
        for start in range(0, len(windows), PREDICT_BATCH):
            batch = windows[start : start + PREDICT_BATCH]
            count = len(batch)
            padded = np.concatenate([batch, np.repeat(batch[-1:], PREDICT_BATCH - count, axis=0)])
            inputs = torch.from_numpy(padded)
            if bf16:
                with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
                    logits = model(inputs)
            else:
                logits = model(inputs)
            chunks.append(logits.float()[:count])
    return ends, torch.cat(chunks).numpy()


def pipeline_probabilities(
    model_file: Path, data: PreparedData, members: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """pipeline_logits of each seed's model (the first `members`; default all), each
    calibrated by its own fit of the default method as evaluate calibrates them, their
    mean (NumPy's), in float32 as predict writes them."""
    checkpoint = torch.load(model_file, weights_only=True)
    records = [checkpoint, *checkpoint["ensemble"]][:members]
    each = []
    for member, record in enumerate(records):
        ends, logits = pipeline_logits(model_file, data, member)
        calibration = checkpoint_calibration(record, model_file, DEFAULT_CALIBRATION)
        each.append(calibrated_probabilities(calibration, logits))
    return ends, np.mean(np.stack(each), axis=0).astype(np.float32)


# --- no train/serve skew ------------------------------------------------------------------


def test_predict_all_agrees_bitwise_with_the_pipelines_own_path(trained, tmp_path, capsys):
    out = tmp_path / "p.csv"
    status, _, _ = run_cli(
        capsys, "--model", trained.model_file, "--all", "--out", out, *trained.raw
    )
    assert status == 0
    predicted = read_predictions(out)
    ends, expected = pipeline_probabilities(trained.model_file, trained.data)
    assert len(predicted) == len(ends)
    np.testing.assert_array_equal(predicted["timestamp"].to_numpy(), trained.data.timestamps[ends])
    names = np.asarray(trained.data.meta["series_names"])[trained.data.series[ends]]
    assert predicted["series"].tolist() == names.tolist()
    # Bit for bit in float32, the checkpoint's precision (bf16 autocast, fp32 outputs): the
    # mean of both seeds' calibrated probabilities, not the first seed's alone.
    assert np.array_equal(as_float32(predicted), expected)
    _, first_seed_only = pipeline_probabilities(trained.model_file, trained.data, members=1)
    assert not np.allclose(as_float32(predicted), first_seed_only, atol=1e-4)
    assert predicted["label"].tolist() == (expected.argmax(axis=1) - 1).tolist()
    assert set(predicted["model"]) == {file_md5(trained.model_file)}


def test_a_planted_scaler_change_breaks_the_agreement(trained, tmp_path, capsys):
    """The no-skew test can fail: a checkpoint whose scaler is off by 1e-6 of a std no longer
    agrees (the control for the bitwise test above)."""
    checkpoint = torch.load(trained.model_file, weights_only=True)
    checkpoint["scaler_std"] = checkpoint["scaler_std"] * (1 + 1e-6)
    skewed = tmp_path / "skewed.pth"
    save_checkpoint(checkpoint, skewed)
    out = tmp_path / "p.csv"
    predict_ok(capsys, "--model", skewed, "--all", "--out", out, *trained.raw)
    _, expected = pipeline_probabilities(trained.model_file, trained.data)
    assert not np.array_equal(as_float32(read_predictions(out)), expected)


# --- streaming --------------------------------------------------------------------------


def write_first_bars(source: Path, bars: int, target: Path) -> Path:
    lines = source.read_text().splitlines(keepends=True)
    target.write_text("".join(lines[: bars + 1]))
    return target


def test_appending_a_bar_predicts_it_as_the_whole_file_does(trained, tmp_path, capsys):
    source = trained.raw[0]
    whole = tmp_path / "whole.csv"
    predict_ok(capsys, "--model", trained.model_file, "--all", "--out", whole, source)
    everything = read_predictions(whole).set_index("timestamp")
    growing = tmp_path / "sp500.csv"
    bars = 1000
    write_first_bars(source, bars, growing)
    for _ in range(3):
        out = tmp_path / "last.csv"
        predict_ok(capsys, "--model", trained.model_file, "--out", out, growing)
        last = read_predictions(out)
        assert len(last) == 1
        stamp = last["timestamp"].iloc[0]
        assert stamp == load_series(source).index[bars - 1]
        assert np.array_equal(
            as_float32(last)[0], everything.loc[stamp, PROBABILITIES].to_numpy(np.float32)
        )
        bars += 1
        with growing.open("a") as handle:
            handle.write(source.read_text().splitlines(keepends=True)[bars])


def test_last_n_reads_the_whole_file_and_outputs_only_the_last_n(trained, tmp_path, capsys):
    out_all, out_last = tmp_path / "all.csv", tmp_path / "last.csv"
    predict_ok(capsys, "--model", trained.model_file, "--all", "--out", out_all, *trained.raw)
    predict_ok(
        capsys, "--model", trained.model_file, "--last", "7", "--out", out_last, *trained.raw
    )
    everything, last = read_predictions(out_all), read_predictions(out_last)
    expected = everything.groupby("series", sort=False).tail(7).reset_index(drop=True)
    pd.testing.assert_frame_equal(last, expected)


def test_since_predicts_every_bar_from_that_date(trained, tmp_path, capsys):
    out_all, out_since = tmp_path / "all.csv", tmp_path / "since.csv"
    predict_ok(capsys, "--model", trained.model_file, "--all", "--out", out_all, trained.raw[0])
    predict_ok(
        capsys,
        "--model",
        trained.model_file,
        "--since",
        "2018-06-01",
        "--out",
        out_since,
        trained.raw[0],
    )
    everything, since = read_predictions(out_all), read_predictions(out_since)
    expected = everything[everything["timestamp"] >= "2018-06-01"].reset_index(drop=True)
    assert len(expected) > 100
    pd.testing.assert_frame_equal(since, expected)


def test_the_default_is_the_last_bar_of_each_series_as_a_table(trained, tmp_path, capsys):
    status, out, err = run_cli(capsys, "--model", trained.model_file, *trained.raw)
    assert status == 0 and err == ""
    lines = out.splitlines()
    written = tmp_path / "last.csv"
    predict_ok(capsys, "--model", trained.model_file, *trained.raw, "--out", written)
    for line, (_, row) in zip(lines[2:], read_predictions(written).iterrows(), strict=True):
        assert line.split()[2:5] == [f"{row[name]:.4f}" for name in PROBABILITIES]
    # The CSV holds float32 probabilities at the 9 significant digits that round-trip them.
    cells = [line.split(",")[2:5] for line in written.read_text().splitlines()[1:]]
    assert all(len(cell.replace("0.", "", 1)) <= 9 for row in cells for cell in row), cells
    assert all(cell == f"{float(np.float32(cell)):.9g}" for row in cells for cell in row), cells
    one = predict_ok(capsys, "--model", trained.model_file, trained.raw[0]).splitlines()
    assert one[0] == lines[0] and len(one) == 3
    assert lines[0] == (
        f"model {trained.model_file} (md5 {file_md5(trained.model_file)}), calibration direction"
    )
    assert lines[1].split() == ["timestamp", "series", *PROBABILITIES, "label"]
    assert [line.split()[:2] for line in lines[2:]] == [
        ["2018-12-31", "sp500"],
        ["2018-12-31", "nasdaq"],
    ]


def test_a_series_never_seen_in_training_is_predicted(trained, tmp_path, capsys):
    new = tmp_path / "brand_new_market.csv"
    synthetic_ohlcv(400, seed=99, start="2021-01-04").to_csv(new, index=False)
    out = tmp_path / "p.csv"
    predict_ok(capsys, "--model", trained.model_file, "--out", out, new)
    predicted = read_predictions(out)
    assert predicted["series"].tolist() == ["brand_new_market"]
    # The model reads features, not names: the same bars under another name, the same numbers.
    renamed = tmp_path / "another_name.csv"
    shutil.copy(new, renamed)
    predict_ok(capsys, "--model", trained.model_file, "--out", out, renamed)
    again = read_predictions(out)
    assert again["series"].tolist() == ["another_name"]
    assert np.array_equal(again[PROBABILITIES].to_numpy(), predicted[PROBABILITIES].to_numpy())


def test_a_panel_file_predicts_the_rows_of_its_per_symbol_files(trained, tmp_path, capsys):
    """A long-format panel (CSV or Parquet, rows interleaved by date) and a directory or
    glob of the per-symbol files predict the same rows as the files listed one by one."""
    (tmp_path / "one").mkdir()
    singles, parts = [], []
    for seed, symbol in enumerate(["MMM", "NNN"], start=60):
        path = tmp_path / "one" / f"{symbol}.csv"
        synthetic_ohlcv(400 - seed, seed=seed, start="2021-01-04").to_csv(path, index=False)
        singles.append(path)
        parts.append(pd.read_csv(path, dtype=str).assign(Ticker=symbol))
    panel = pd.concat(parts).sort_values(["Date", "Ticker"], ascending=[True, False])
    panel.to_csv(tmp_path / "panel.csv", index=False)
    parsed = pd.concat(
        pd.read_csv(path, parse_dates=["Date"], float_precision="round_trip").assign(
            Ticker=path.stem
        )
        for path in singles
    )
    parsed.to_parquet(tmp_path / "panel.parquet")
    out = tmp_path / "p.csv"
    predict_ok(capsys, "--model", trained.model_file, "--all", "--out", out, *singles)
    expected = read_predictions(out)
    assert expected["series"].unique().tolist() == ["MMM", "NNN"]
    for inputs in (["panel.csv"], ["panel.parquet"], ["one"], ["one/*.csv"]):
        paths = [str(tmp_path / name) for name in inputs]
        predict_ok(capsys, "--model", trained.model_file, "--all", "--out", out, *paths)
        pd.testing.assert_frame_equal(read_predictions(out), expected, check_exact=True)


def test_since_leaves_out_a_panels_symbols_that_ended_before_it(trained, tmp_path, capsys):
    """A delisted symbol of a panel has no bar from --since on: the others are predicted and
    a note names it (as the lockbox stage opens a universe); one whose last bar is --since
    itself is predicted at that bar; a panel none of whose symbols reaches --since is
    refused as a one-series file is, naming the first symbol."""
    parts = []
    for seed, (symbol, bars) in enumerate([("LIVE", 400), ("GONE", 330), ("EDGE", 361)], 70):
        frame = synthetic_ohlcv(bars, seed=seed, start="2021-01-04")
        parts.append(frame.assign(Ticker=symbol))
    panel = tmp_path / "panel.csv"
    pd.concat(parts).to_csv(panel, index=False)
    since = parts[0]["Date"].iloc[360]
    assert parts[2]["Date"].iloc[-1] == since
    out = tmp_path / "p.csv"
    status, _, stderr = run_cli(
        capsys, "--model", trained.model_file, "--since", since.date(), "--out", out, panel
    )
    assert status == 0, stderr
    predicted = read_predictions(out)
    assert predicted["series"].value_counts().to_dict() == {"LIVE": 40, "EDGE": 1}
    assert predicted.loc[predicted["series"] == "EDGE", "timestamp"].tolist() == [since]
    assert stderr == (
        f"note: {panel}: 1 symbol(s) end before --since {since.date()} and are not predicted "
        "(GONE)\n"
    )
    late = parts[0]["Date"].iloc[-1] + pd.Timedelta(days=10)
    status, _, stderr = run_cli(capsys, "--model", trained.model_file, "--since", late, panel)
    assert status == 2
    assert stderr == (
        f"error: {panel}::EDGE: --since {late} is after the file's last bar ({since})\n"
    )


# Scales each feature by 1 around 0: a series' inputs are then its features, in float32.
IDENTITY_SCALER = StandardScaler(mean=np.zeros(len(FEATURE_NAMES)), std=np.ones(len(FEATURE_NAMES)))


def split_file(path: Path) -> Path:
    """A file whose Close is not adjusted for a 2:1 split at bar 200 and whose Adj Close is."""
    rows = synthetic_ohlcv(400, seed=12)
    before = rows.index < 200
    for name in ("Open", "High", "Low", "Close"):
        rows.loc[before, name] *= 2.0
    rows["Adj Close"] = rows["Close"].where(~before, rows["Close"] / 2.0)
    rows.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("adjust_volume", [True, False])
def test_a_series_is_validated_with_the_checkpoints_volume_adjustment(tmp_path, adjust_volume):
    """A checkpoint from before data.adjust_volume was trained on unadjusted volume: its
    series are read so, and a newer checkpoint's adjusted."""
    path = str(split_file(tmp_path / "split.csv"))
    rows = split_sources(path)[path]
    inputs = ModelInputs(seq_len=8, scaler=IDENTITY_SCALER, adjust_volume=adjust_volume)
    outcome = predict_inputs.source_outcome(path, rows, inputs, Selection(last=3))
    expected = {
        flag: feature_matrix(validate_series(path, rows, flag))[-10:].astype(np.float32)
        for flag in (True, False)
    }
    assert not np.array_equal(expected[True], expected[False])
    np.testing.assert_array_equal(outcome.inputs.rows, expected[adjust_volume])


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_a_panel_symbols_non_finite_feature_names_that_symbol(tmp_path):
    """The refusal of a series whose features are not finite names its key (the panel's
    symbol), and the bar its frame says most likely caused it."""
    frame = synthetic_ohlcv(300, seed=13).set_index("Date").rename(columns=str.lower)
    frame.index = pd.DatetimeIndex(frame.index, name="timestamp")
    frame.iloc[250, frame.columns.get_loc("close")] = np.inf
    inputs = ModelInputs(seq_len=8, scaler=IDENTITY_SCALER)
    with pytest.raises(DataError) as raised:
        predict_inputs.series_inputs("panel.csv::AAA", frame, inputs, Selection())
    message = str(raised.value)
    assert message.startswith("panel.csv::AAA: feature ")
    assert f"is the bar of {frame.index[250]} (Close inf); check that bar" in message


@pytest.mark.parametrize(
    ("ended", "listed"),
    [
        (5, "S0, S1, S2, S3, S4"),
        (6, "S0, S1, S2, S3, S4 and 1 more"),
        (7, "S0, S1, S2, S3, S4 and 2 more"),
    ],
)
def test_the_note_on_ended_symbols_names_five_and_counts_the_rest(capsys, ended, listed):
    since = pd.Timestamp("2021-06-01")
    outcomes = [
        predict_inputs.SeriesOutcome(f"p.csv::S{index}", None, DataError("ended"), True)
        for index in range(ended)
    ]
    live = predict_inputs.SeriesOutcome("p.csv::LIVE", "inputs of LIVE", None, False)
    kept = predict_inputs.file_series("p.csv", [*outcomes, live], Selection(since=since))
    assert kept == ["inputs of LIVE"]
    assert capsys.readouterr().err == (
        f"note: p.csv: {ended} symbol(s) end before --since 2021-06-01 and are not predicted "
        f"({listed})\n"
    )


def test_many_files_predict_every_series_in_a_pool_or_not_with_progress(
    trained, tmp_path, monkeypatch, capsys
):
    """Nine one-series files and a panel with a delisted symbol under --since: with 2 cores
    each file is a task of a pool, with 1 they run in turn, and with 4 the files are read
    here and each series is a task of a pool of 3; every series is predicted the same,
    the delisted symbol is named once, and FINSEQ_PROGRESS=1 prints a line per tenth."""
    monkeypatch.setenv("FINSEQ_PROGRESS", "1")
    paths = []
    for index in range(9):
        paths.append(tmp_path / f"f{index}.csv")
        synthetic_ohlcv(400, seed=80 + index, start="2021-01-04").to_csv(paths[-1], index=False)
    parts = [
        synthetic_ohlcv(bars, seed=seed, start="2021-01-04").assign(Ticker=symbol)
        for seed, (symbol, bars) in enumerate([("LIVE", 400), ("GONE", 330)], 90)
    ]
    panel = tmp_path / "panel.csv"
    pd.concat(parts).to_csv(panel, index=False)
    paths.append(panel)
    since = parts[0]["Date"].iloc[360]
    predictions = {}
    for cores, tasks in ((2, 10), (1, 10), (4, 11)):
        monkeypatch.setattr(predict_inputs, "usable_cores", lambda cores=cores: cores)
        predicted = predict(
            [str(path) for path in paths], trained.model_file, Selection(since=since)
        )
        predictions[cores] = predicted
        lines = capsys.readouterr().err.splitlines()
        notes = [line for line in lines if not line.startswith("predict: ")]
        assert notes == [
            f"note: {panel}: 1 symbol(s) end before --since {since.date()} and are not "
            "predicted (GONE)"
        ]
        progress = [line for line in lines if line not in notes]
        pattern = rf"predict: (\d+/{tasks} series \(\d+%\), \d+ s|done, {tasks} series in \d+ s)"
        assert 1 < len(progress) <= 11, progress
        assert [line for line in progress if not re.fullmatch(pattern, line)] == []
    expected = [f"f{index}" for index in range(9)] + ["LIVE"]
    assert predictions[1]["series"].unique().tolist() == expected
    assert (predictions[1]["series"].value_counts() == 40).all()
    pd.testing.assert_frame_equal(predictions[2], predictions[1], check_exact=True)
    pd.testing.assert_frame_equal(predictions[4], predictions[1], check_exact=True)


def test_a_file_that_cannot_be_read_after_good_ones_is_refused(trained, tmp_path, monkeypatch):
    """A few files are read here before any is predicted: an unreadable one is refused, not
    skipped, whichever its place."""
    monkeypatch.setattr(predict_inputs, "usable_cores", lambda: 2)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    for paths in ([trained.raw[0], empty], [empty, trained.raw[0]]):
        with pytest.raises(DataError) as raised:
            predict([str(path) for path in paths], trained.model_file, Selection())
        assert str(raised.value) == f"{empty}: file is empty"


# --- how much history a prediction needs ---------------------------------------------------


def test_history_note_appears_just_below_the_boundary_and_not_at_it(trained, tmp_path, capsys):
    """At bars_for_full_history bars the last bar agrees with the whole file's to 1e-6 and
    no note is printed; one bar fewer prints the note."""
    source = trained.raw[0]
    checkpoint = torch.load(trained.model_file, weights_only=True)
    needed = ModelInputs(seq_len=checkpoint["seq_len"], scaler=None).bars_for_full_history
    lines = source.read_text().splitlines(keepends=True)
    whole = tmp_path / "whole.csv"
    predict_ok(capsys, "--model", trained.model_file, "--all", "--out", whole, source)
    everything = read_predictions(whole).set_index("timestamp")
    for bars, noted in ((needed, False), (needed - 1, True)):
        tail = tmp_path / f"tail{bars}.csv"
        tail.write_text(lines[0] + "".join(lines[-bars:]))
        out = tmp_path / f"out{bars}.csv"
        status, _, err = run_cli(capsys, "--model", trained.model_file, "--out", out, tail)
        assert status == 0
        assert ("fewer than" in err) is noted, err
        last = read_predictions(out)
        gap = np.abs(
            as_float32(last)[0] - everything.loc[last["timestamp"].iloc[0], PROBABILITIES]
        ).max()
        if not noted:
            assert gap <= 1e-6
            assert err == ""
        else:
            assert err.count("\n") == 1 and err.startswith("note: ")


def test_short_history_changes_the_prediction(trained, tmp_path, capsys):
    """The control: the note is about a real effect. Features from a file that starts just
    before the window differ from the whole file's by far more than 1e-6."""
    source = trained.raw[0]
    checkpoint = torch.load(trained.model_file, weights_only=True)
    fewest = ModelInputs(seq_len=checkpoint["seq_len"], scaler=None).bars_needed
    lines = source.read_text().splitlines(keepends=True)
    tail = tmp_path / "tail.csv"
    tail.write_text(lines[0] + "".join(lines[-fewest:]))
    whole, out = tmp_path / "whole.csv", tmp_path / "out.csv"
    predict_ok(capsys, "--model", trained.model_file, "--out", whole, source)
    status, _, err = run_cli(capsys, "--model", trained.model_file, "--out", out, tail)
    assert status == 0 and "fewer than" in err
    full = read_predictions(whole)[PROBABILITIES].to_numpy()
    short = read_predictions(out)[PROBABILITIES].to_numpy()
    assert np.abs(full - short).max() > 1e-6


# --- refusals: one line, exit 2, nothing written -------------------------------------------


def assert_refused(capsys, out: Path, *args: str) -> str:
    status, stdout, err = run_cli(capsys, *args)
    assert status == 2, err
    assert stdout == ""
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert not out.exists()
    return err.strip()


def test_too_few_bars_gives_the_numbers(trained, tmp_path, capsys):
    short = tmp_path / "short.csv"
    synthetic_ohlcv(50, seed=1).to_csv(short, index=False)
    out = tmp_path / "p.csv"
    error = assert_refused(capsys, out, "--model", trained.model_file, "--out", out, short)
    checkpoint = torch.load(trained.model_file, weights_only=True)
    needed = 60 + checkpoint["seq_len"]
    assert f"only 50 bars; predicting needs at least {needed}" in error


def test_a_file_load_rejects_gets_the_message_prepare_gives(trained, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    frame = synthetic_ohlcv(300, seed=2)
    frame.loc[150, "Volume"] = -5
    frame.to_csv(bad, index=False)
    with pytest.raises(DataError) as raised:
        load_series(bad)
    out = tmp_path / "p.csv"
    error = assert_refused(capsys, out, "--model", trained.model_file, "--out", out, bad)
    assert error == f"error: {raised.value}"
    assert "line 152" in error


def test_the_first_bad_file_is_named_even_among_many(trained, tmp_path, capsys):
    """With enough files the work runs in a process pool; the refusal is still the first
    bad file in command-line order."""
    files = []
    for index in range(12):
        path = tmp_path / f"s{index:02d}.csv"
        rows = 50 if index in (5, 9) else 300
        synthetic_ohlcv(rows, seed=index).to_csv(path, index=False)
        files.append(path)
    out = tmp_path / "p.csv"
    error = assert_refused(capsys, out, "--model", trained.model_file, "--out", out, *files)
    assert "s05.csv: only 50 bars" in error


def test_every_batch_the_model_sees_is_padded_to_predict_batch(trained, monkeypatch):
    """A window's logits must not depend on how many windows share its batch (CPU kernels
    here give the same bits either way; a device whose kernels follow the batch shape would
    not), so the last, partial batch is padded to PREDICT_BATCH, as evaluate pads."""
    batch_sizes = []
    read_model = predict_module.read_model

    def read_model_recording_batches(path):
        members, checkpoint = read_model(path)
        for member in members:
            member.model.register_forward_pre_hook(
                lambda module, args: batch_sizes.append(len(args[0]))
            )
        return members, checkpoint

    monkeypatch.setattr(predict_module, "read_model", read_model_recording_batches)
    predicted = predict([str(trained.raw[0])], trained.model_file, Selection(last=3))
    assert len(predicted) == 3
    assert batch_sizes == [PREDICT_BATCH, PREDICT_BATCH]  # one batch for each of 2 seeds


def test_a_pool_gives_the_same_predictions_as_one_process(trained, tmp_path, monkeypatch):
    files = []
    for index in range(9):
        path = tmp_path / f"s{index}.csv"
        synthetic_ohlcv(400, seed=index).to_csv(path, index=False)
        files.append(str(path))
    monkeypatch.setattr(predict_inputs, "usable_cores", lambda: 2)
    pooled = predict(files, trained.model_file, Selection(last=3))
    monkeypatch.setattr(predict_inputs, "usable_cores", lambda: 1)
    alone = predict(files, trained.model_file, Selection(last=3))
    pd.testing.assert_frame_equal(pooled, alone)


def test_a_panels_series_are_shared_out_to_a_pool_and_predict_as_in_one_process(
    trained, tmp_path, monkeypatch
):
    """One panel file of 9 symbols is read once and its series go to the pool's processes
    (forked, so they are not pickled); the rows equal those of one process, in order, and
    the pool really ran (its tasks ran in other processes)."""
    panel = write_long_panel(tmp_path / "panel.parquet", 9, 400, seed=3)
    ran_in = []
    original = predict_inputs.source_outcome

    def recording(*args, **kwargs):
        ran_in.append(os.getpid())
        return original(*args, **kwargs)

    monkeypatch.setattr(predict_inputs, "source_outcome", recording)
    monkeypatch.setattr(predict_inputs, "usable_cores", lambda: 2)
    pooled = predict([str(panel)], trained.model_file, Selection(last=3))
    assert ran_in == []  # every series was validated in a worker
    monkeypatch.setattr(predict_inputs, "usable_cores", lambda: 1)
    alone = predict([str(panel)], trained.model_file, Selection(last=3))
    assert len(ran_in) == 9 and set(ran_in) == {os.getpid()}
    pd.testing.assert_frame_equal(pooled, alone, check_exact=True)
    assert pooled["series"].unique().tolist() == [f"S{index:03d}" for index in range(9)]


def test_a_pool_prints_the_notes_and_raises_the_error_of_one_process(
    trained, tmp_path, monkeypatch, capsys
):
    """Pooled or not, the notes come out in series order and the refusal is the one a
    single process meets first: a bad row of the first file before the second file's
    missing; within a file, a later symbol's bad row before an earlier symbol's too few
    bars (every symbol of a file is validated first); a one-series file too short for the
    model before --since being after its end."""
    panel = write_long_panel(tmp_path / "panel.csv", 9, 400, seed=4)
    frame = pd.read_csv(panel, float_precision="round_trip")
    for symbol in ("S001", "S004", "S007"):  # a hole of 60 bars: a note naming its line
        frame = frame.drop(index=frame.index[frame["Symbol"] == symbol][200:260])
    frame.to_csv(panel, index=False)
    printed = {}
    for cores in (2, 1):
        monkeypatch.setattr(predict_inputs, "usable_cores", lambda cores=cores: cores)
        predict([str(panel)], trained.model_file, Selection())
        printed[cores] = capsys.readouterr().err
    assert printed[2] == printed[1]
    assert printed[1].index("::S001:") < printed[1].index("::S004:") < printed[1].index("::S007:")

    bad = tmp_path / "bad.csv"
    rows = synthetic_ohlcv(400, seed=5)
    rows.loc[50, "Close"] = -1.0
    rows.to_csv(bad, index=False)
    short = frame[frame["Symbol"] == "S000"].head(40)
    late_bad = frame[frame["Symbol"] == "S002"].copy()
    late_bad.loc[late_bad.index[10], "Volume"] = -5.0
    mixed = tmp_path / "mixed.csv"
    pd.concat([short, late_bad]).to_csv(mixed, index=False)
    one_short = tmp_path / "short.csv"
    rows.drop(index=50).head(40).to_csv(one_short, index=False)
    cases = [
        ([bad, tmp_path / "missing.csv"], Selection(), "bad.csv: line 52"),
        ([mixed], Selection(), "mixed.csv::S002: line"),
        ([one_short], Selection(since=pd.Timestamp("2100-01-01")), "short.csv: only 40 bars"),
    ]
    for paths, selection, expected in cases:
        for cores in (2, 1):
            monkeypatch.setattr(predict_inputs, "usable_cores", lambda cores=cores: cores)
            with pytest.raises(DataError) as raised:
                predict([str(path) for path in paths], trained.model_file, selection)
            assert expected in str(raised.value), (cores, str(raised.value))


def test_an_unsafe_model_file_is_refused_and_runs_nothing(trained, tmp_path, capsys):
    marker = tmp_path / "code-ran"
    malicious = write_malicious(tmp_path / "evil.pth", marker)
    out = tmp_path / "p.csv"
    error = assert_refused(capsys, out, "--model", malicious, "--out", out, trained.raw[0])
    assert "refused to load" in error
    assert not marker.exists()


def test_an_unreadable_model_file_is_refused(trained, tmp_path, capsys):
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(trained.model_file.read_bytes()[:1000])
    out = tmp_path / "p.csv"
    error = assert_refused(capsys, out, "--model", truncated, "--out", out, trained.raw[0])
    assert "not a readable model checkpoint" in error
    missing = tmp_path / "missing.pth"
    assert "model file not found" in assert_refused(
        capsys, out, "--model", missing, "--out", out, trained.raw[0]
    )


@pytest.mark.parametrize(
    "reorder",
    [
        pytest.param(lambda names: [names[1], names[0], *names[2:]], id="two-swapped"),
        pytest.param(lambda names: [*names[:-1], "renamed"], id="one-renamed"),
    ],
)
def test_a_checkpoint_of_other_feature_names_is_refused(trained, tmp_path, capsys, reorder):
    """Same number of features, other names or order: the weights would read the wrong
    columns, so predict refuses in one line, exit 2, and writes nothing."""
    checkpoint = torch.load(trained.model_file, weights_only=True)
    checkpoint["feature_names"] = reorder(list(checkpoint["feature_names"]))
    assert checkpoint["n_features"] == len(checkpoint["feature_names"])
    other = tmp_path / "other.pth"
    save_checkpoint(checkpoint, other)
    out = tmp_path / "p.csv"
    error = assert_refused(capsys, out, "--model", other, "--out", out, trained.raw[0])
    assert "was trained on other features than this finseq computes" in error


def test_a_checkpoint_of_another_finseq_series_is_refused_naming_both(trained, tmp_path, capsys):
    checkpoint = torch.load(trained.model_file, weights_only=True)
    checkpoint["provenance"]["finseq_version"] = "0.9.3"
    other = tmp_path / "other.pth"
    save_checkpoint(checkpoint, other)
    out = tmp_path / "p.csv"
    error = assert_refused(capsys, out, "--model", other, "--out", out, trained.raw[0])
    assert error.startswith(
        f"error: {other} was written by finseq 0.9.3; this is finseq {finseq.__version__}"
    )
    # A patch release of the same series reads it.
    checkpoint["provenance"]["finseq_version"] = "0.1.99"
    save_checkpoint(checkpoint, other)
    predict_ok(capsys, "--model", other, "--out", out, trained.raw[0])


def test_a_checkpoint_without_calibrations_is_refused_naming_it(trained, tmp_path, capsys):
    checkpoint = torch.load(trained.model_file, weights_only=True)
    checkpoint.pop("calibrations")
    old = tmp_path / "old.pth"
    save_checkpoint(checkpoint, old)
    out = tmp_path / "p.csv"
    error = assert_refused(capsys, out, "--model", old, "--out", out, trained.raw[0])
    assert error == (
        f"error: {old} holds no calibration (saved by an older finseq): run `dvc repro`, or set "
        "evaluate.calibration to none"
    )


@pytest.mark.parametrize(
    ("data_params", "adjusted"),
    [
        ({"adjust_volume": True}, True),
        ({"adjust_volume": False}, False),
        ({}, False),  # a checkpoint from before data.adjust_volume
        (None, False),  # ... and from before its data section was saved
    ],
)
def test_series_are_read_with_the_volume_adjustment_the_checkpoint_was_trained_on(
    trained, tmp_path, monkeypatch, data_params, adjusted
):
    checkpoint = torch.load(trained.model_file, weights_only=True)
    if data_params is None:
        checkpoint["params"].pop("data")
    else:
        checkpoint["params"]["data"] = data_params
    model = tmp_path / "model.pth"
    save_checkpoint(checkpoint, model)
    seen = []
    gather_inputs = predict_module.gather_inputs

    def gather_inputs_recording(paths, inputs, selection):
        seen.append(inputs.adjust_volume)
        return gather_inputs(paths, inputs, selection)

    monkeypatch.setattr(predict_module, "gather_inputs", gather_inputs_recording)
    predict([str(trained.raw[0])], model, Selection())
    assert seen == [adjusted] and type(seen[0]) is bool


def test_since_after_the_last_bar_is_refused(trained, tmp_path, capsys):
    out = tmp_path / "p.csv"
    error = assert_refused(
        capsys,
        out,
        "--model",
        trained.model_file,
        "--since",
        "2019-02-01",
        "--out",
        out,
        trained.raw[0],
    )
    assert "--since 2019-02-01 00:00:00 is after the file's last bar (2018-12-31" in error


@pytest.mark.parametrize("where", ["missing-folder/p.csv", "a-folder"])
def test_an_output_path_that_cannot_be_written_is_refused_before_any_work(
    trained, tmp_path, capsys, where
):
    (tmp_path / "a-folder").mkdir()
    out = tmp_path / where
    status, _, err = run_cli(capsys, "--model", trained.model_file, "--out", out, trained.raw[0])
    assert status == 2 and err.count("\n") == 1 and f"--out {out}" in err
    assert not (tmp_path / "missing-folder").exists()
    assert list((tmp_path / "a-folder").iterdir()) == []


@pytest.mark.parametrize("unwritable", ["folder", "file"])
def test_an_output_that_may_not_be_written_is_refused_before_any_work(
    tmp_path, capsys, monkeypatch, unwritable
):
    """A folder or an existing file that the user may not write (os.access says so; root
    may write anything, so the permission is faked) stops before the model is read."""
    out = tmp_path / "p.csv"
    out.write_text("kept")
    refused = tmp_path if unwritable == "folder" else out
    real_access = os.access
    monkeypatch.setattr(
        predict_module.os,
        "access",
        lambda path, mode: Path(path) != refused and real_access(path, mode),
    )
    status, _, err = run_cli(capsys, "--model", tmp_path / "no-model.pth", "--out", out, "a.csv")
    assert (status, err) == (2, f"error: --out {out}: not writable\n")
    assert out.read_text() == "kept"


def test_two_files_of_one_series_name_are_refused(trained, tmp_path, capsys):
    (tmp_path / "x").mkdir()
    copy = Path(shutil.copy(trained.raw[0], tmp_path / "x" / "sp500.csv"))
    out = tmp_path / "p.csv"
    error = assert_refused(
        capsys, out, "--model", trained.model_file, "--out", out, trained.raw[0], copy
    )
    assert error == (
        f"error: the command line lists '{trained.raw[0]}' and '{copy}': two series named "
        "'sp500'; give each file or symbol a distinct name"
    )
    pattern = str(tmp_path / "nothing-*.csv")
    error = assert_refused(capsys, out, "--model", trained.model_file, "--out", out, pattern)
    assert error == f"error: the command line: {pattern!r} matches no files"


# --- provenance ---------------------------------------------------------------------------


def test_the_checkpoint_says_what_it_was_built_from(trained):
    checkpoint = torch.load(trained.model_file, weights_only=True)
    provenance = checkpoint["provenance"]
    assert provenance == {
        "finseq_version": finseq.__version__,
        "torch_version": str(torch.__version__),
        "source_hash": source_hash(),
        "prepared_hash": trained.data.content_hash,
        "windows_hash": trained.windows.content_hash,
    }
    params = tiny_params()
    assert checkpoint["params"]["label"] == dataclasses.asdict(params.label)
    # Opening the lockbox scores a model; it never changes what the model was trained on.
    split = {k: v for k, v in dataclasses.asdict(params.split).items() if k != "lockbox_open"}
    assert checkpoint["params"]["split"] == split
    assert checkpoint["params"]["window"] == dataclasses.asdict(params.window)
    assert "threads" not in checkpoint["params"]["train"]
    training = checkpoint["training"]
    assert training["fold"] == "final" and training["trained_until"].startswith("2018-12-31")
    assert training["series"] == ["sp500", "nasdaq"]
    assert checkpoint["feature_names"] and checkpoint["seq_len"] == params.window.seq_len


def test_the_source_hash_covers_exactly_the_train_stages_source_deps():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    train_sources = {
        dep.removeprefix("src/finseq/")
        for dep in stages["train"]["deps"]
        if dep.startswith("src/finseq/")
    }
    assert set(MODEL_SOURCES) == train_sources


def test_the_source_hash_changes_with_a_model_source_file(tmp_path, monkeypatch):
    package = tmp_path / "finseq"
    shutil.copytree(Path(finseq.__file__).parent, package)
    monkeypatch.setattr(finseq, "__file__", str(package / "__init__.py"))
    before = source_hash()
    (package / "models.py").write_text((package / "models.py").read_text() + "\n# changed\n")
    assert source_hash() != before


def test_window_sets_store_the_hash_of_the_prepared_data_they_index(trained, tmp_path):
    trained.windows.save(tmp_path / "windows")
    loaded = WindowSets.load(tmp_path / "windows")
    assert loaded.prepared_hash == trained.data.content_hash
    assert loaded.content_hash == trained.windows.content_hash
    trained.data.save(tmp_path / "prepared")
    assert PreparedData.load(tmp_path / "prepared").content_hash == trained.data.content_hash


def test_the_prepared_hash_follows_the_label_params(trained):
    params = tiny_params(label={"horizon": 4})
    frames = {str(p): load_series(p) for p in trained.raw}
    relabelled = prepare_dataset(frames, params.label, params.split)
    assert relabelled.content_hash != trained.data.content_hash
    again = prepare_dataset(frames, tiny_params().label, tiny_params().split)
    assert again.content_hash == trained.data.content_hash


# --- the model card ----------------------------------------------------------------------


def test_the_model_card_covers_what_a_user_must_know(trained):
    checkpoint = torch.load(trained.model_file, weights_only=True)
    metrics = {
        "model_md5": "x",
        "test": {
            "samples": 7034,
            "skill": 0.021,
            "skill_low": 0.009,
            "skill_high": 0.033,
            "accuracy": 0.401,
            "majority_accuracy": 0.356,
            "balanced_accuracy": 0.385,
            "balanced_accuracy_low": 0.361,
            "balanced_accuracy_high": 0.41,
            "sharpe": 0.18,
            "sharpe_low": -0.33,
            "sharpe_high": 0.72,
            "buy_hold_sharpe": 0.47,
            "annual_return": 0.016,
            "annual_return_low": -0.063,
            "annual_return_high": 0.106,
        },
    }
    card = model_card(checkpoint, "abc123", metrics)
    for heading in (
        "What it is",
        "Inputs",
        "Training",
        "Out-of-sample results",
        "Not for",
        "Provenance",
    ):
        assert f"## {heading}" in card
    assert "+0.021 [+0.009, +0.033]" in card
    assert "+0.18 [-0.33, +0.72], +0.47" in card
    assert "2018-12-31" in card and "rsi_14" in card and "abc123" in card
    without = model_card(checkpoint, "abc123", None)
    assert "Not shown: pass the eval.json" in without


# --- end to end: the real pipeline, the console script, dvc get ----------------------------


def finseq_command(project: Project, *args: str, cwd: Path | None = None, check: bool = True):
    result = subprocess.run(
        [str(VENV_BIN / "finseq"), *args],
        cwd=cwd or project.path,
        env=project.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"finseq {' '.join(args)}: {result.stderr}")
    return result


@pytest.fixture(scope="module")
def pipeline(reproduced_template, tmp_path_factory) -> Project:
    """This module's own copy of the reproduced tiny project, with a DVC remote: its tests
    commit, push, re-prepare and restore, which no other module's tests may see."""
    project = reproduced_project(reproduced_template, tmp_path_factory.mktemp("predict") / "repo")
    remote = project.path.parent / "remote"
    project.run("dvc", "remote", "add", "-d", "store", str(remote))
    project.commit("a remote")
    project.run("dvc", "push")
    return project


@pytest.mark.slow
def test_the_console_script_predicts_every_raw_file_without_skew(pipeline: Project):
    # Every raw file, in another order than params.yaml's data.files (as data/raw/*.csv
    # expands for the default files): rows are matched by series and timestamp.
    raw = pipeline.read_params()["data"]["files"][::-1]
    assert sorted(raw) == sorted(
        str(p.relative_to(pipeline.path)) for p in pipeline.path.glob("data/raw/*")
    )
    finseq_command(pipeline, "predict", "--all", "--out", "p.csv", *raw)
    predicted = read_predictions(pipeline.path / "p.csv")
    data = PreparedData.load(pipeline.path / "data/prepared")
    ends, expected = pipeline_probabilities(pipeline.path / "models/model.pth", data)
    assert np.array_equal(as_float32(in_prepared_order(predicted, data, ends)), expected)
    # python -m finseq.predict is the same command.
    module = pipeline.run(sys.executable, "-m", "finseq.predict", "--all", "--out", "m.csv", *raw)
    assert module.stderr == finseq_command(pipeline, "predict", "--all", *raw).stderr
    assert (pipeline.path / "m.csv").read_bytes() == (pipeline.path / "p.csv").read_bytes()
    (pipeline.path / "p.csv").unlink()
    (pipeline.path / "m.csv").unlink()


@pytest.mark.slow
def test_info_shows_the_runs_metrics_beside_the_model_they_belong_to(pipeline: Project):
    card = finseq_command(pipeline, "info").stdout
    metrics = json.loads((pipeline.path / "metrics/eval.json").read_text())
    assert metrics["model_md5"] == file_md5(pipeline.path / "models/model.pth")
    assert f"{metrics['test']['skill']:+.3f} [{metrics['test']['skill_low']:+.3f}" in card
    other = pipeline.path.parent / "other.json"
    other.write_text(json.dumps({**metrics, "model_md5": "0" * 32}))
    refused = finseq_command(pipeline, "info", "--metrics", str(other), check=False)
    assert refused.returncode == 2 and "evaluation of another model" in refused.stderr
    assert refused.stdout == ""


@pytest.mark.slow
def test_a_model_fetched_alone_with_dvc_get_predicts_in_an_empty_directory(pipeline, tmp_path):
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    pipeline.run(
        "dvc", "get", str(pipeline.path), "models/model.pth", "-o", str(empty / "model.pth")
    )
    new = synthetic_ohlcv(500, seed=123, start="2022-01-03")
    new.to_csv(empty / "new.csv", index=False)
    assert sorted(p.name for p in empty.iterdir()) == ["model.pth", "new.csv"]
    table = finseq_command(pipeline, "predict", "--model", "model.pth", "new.csv", cwd=empty)
    last_date = str(new["Date"].iloc[-1].date())
    assert table.stdout.splitlines()[2].split()[:2] == [last_date, "new"]
    card = finseq_command(pipeline, "info", "model.pth", cwd=empty).stdout
    assert "## Inputs" in card and "Not shown: pass the eval.json" in card


@pytest.mark.slow
def test_stale_artefacts_are_refused_by_train_and_evaluate(pipeline: Project):
    """Re-prepare with another label.horizon, then run later stages alone (dvc repro -s):
    each stops with one line naming what differs, exit 2."""
    params = pipeline.read_params()
    horizon = params["label"]["horizon"]
    params["label"]["horizon"] = horizon + 1
    pipeline.write_params(params)
    try:
        stale_runs(pipeline, horizon)
    finally:
        pipeline.run("git", "checkout", "--", ".")
        pipeline.run("dvc", "checkout", "-q", "--force")


def stale_runs(pipeline: Project, horizon: int) -> None:
    pipeline.run("dvc", "repro", "-s", "prepare")

    # evaluate first: a failed train has had its outputs removed by DVC (dvc checkout
    # brings them back from the cache, as below).
    for stage in ("evaluate", "train"):
        result = pipeline.run("dvc", "repro", "-s", stage, check=False)
        assert result.returncode != 0
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, result.stderr
        assert errors[0].startswith("error: data/windows was built from other prepared data")
        assert errors[0].endswith("run `dvc repro`")
        assert "exited with 2" in result.stderr

    pipeline.run("dvc", "checkout", "train")
    pipeline.run("dvc", "repro", "-s", "window")
    result = pipeline.run("dvc", "repro", "-s", "evaluate", check=False)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "exited with 2" in result.stderr
    assert errors[0].startswith("error: models/folds/f1.pth was trained on other prepared data")
    assert f"label.horizon is {horizon} in the model, {horizon + 1} in the data" in errors[0]


def test_the_finseq_command_dispatches_and_names_an_unknown_command(capsys):
    from finseq.cli import main

    main(["--help"])
    assert "predict" in capsys.readouterr().out
    with pytest.raises(SystemExit) as raised:
        main(["bogus"])
    assert raised.value.code == 2
    assert capsys.readouterr().err == (
        "error: unknown command 'bogus'; commands are: predict, info (see finseq --help)\n"
    )
    with pytest.raises(SystemExit) as raised:
        main([])
    assert raised.value.code == 2
    assert capsys.readouterr().err == (
        "error: finseq needs a command: predict or info (see finseq --help)\n"
    )


# What scoring a CSV or printing a card never needs: finseq's training, fold, distributed,
# pipeline and evaluation code, and DVCLive (import torch loads torch.distributed: fine).
TRAINING_MACHINERY = (
    "dvclive",
    "finseq.fit",
    "finseq.folds",
    "finseq.distributed",
    "finseq.pipeline",
    "finseq.scoring",
    "finseq.evidence",
    "arch",
)


@pytest.mark.parametrize("command", ["predict", "info"])
def test_predict_and_info_load_no_training_machinery(trained, tmp_path, command):
    args = (
        [
            "predict",
            "--model",
            str(trained.model_file),
            "--out",
            str(tmp_path / "p.csv"),
            str(trained.raw[0]),
        ]
        if command == "predict"
        else ["info", str(trained.model_file)]
    )
    script = (
        "import sys\n"
        "from finseq.cli import main\n"
        f"main({args!r})\n"
        f"unwanted = {TRAINING_MACHINERY!r}\n"
        "print(sorted(m for m in sys.modules if m in unwanted or m.startswith('dvclive.')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    if command == "predict":
        assert len(pd.read_csv(tmp_path / "p.csv")) == 1


def test_each_calibration_is_the_checkpoints_own_fit_and_none_is_the_softmax(trained, tmp_path):
    """--calibration none writes the mean of the seeds' softmax; each other method the mean
    of each seed's own fit (made on its val windows when it was saved), and the default is
    params.yaml's evaluate.calibration."""
    checkpoint = torch.load(trained.model_file, weights_only=True)
    records = [checkpoint, *checkpoint["ensemble"]]
    assert len(records) == 2
    logits = [pipeline_logits(trained.model_file, trained.data, m)[1] for m in range(2)]
    for record in records:
        assert set(record["calibrations"]) == {"none", "temperature", "move_direction", "direction"}
    for method in ("none", "temperature", "move_direction", "direction"):
        out = tmp_path / f"{method}.csv"
        predict_module.run(
            [
                "--model",
                str(trained.model_file),
                "--all",
                "--calibration",
                method,
                "--out",
                str(out),
                *map(str, trained.raw),
            ]
        )
        each = [
            calibrated_probabilities(
                checkpoint_calibration(record, trained.model_file, method), member_logits
            )
            for record, member_logits in zip(records, logits, strict=True)
        ]
        expected = np.mean(np.stack(each), axis=0).astype(np.float32)
        assert np.array_equal(as_float32(read_predictions(out)), expected), method
        if method == "none":
            softmaxes = np.mean(np.stack([softmax(x) for x in logits]), axis=0)
            assert np.array_equal(expected, softmaxes.astype(np.float32))
    defaults = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert defaults["evaluate"]["calibration"] == DEFAULT_CALIBRATION


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--last", "0"], "argument --last: '0' is not an integer >= 1"),
        (["--last", "x1"], "argument --last: 'x1' is not an integer >= 1"),
        (["--since", "not-a-date"], "argument --since: 'not-a-date' is not a date"),
    ],
)
def test_a_bad_selection_is_a_usage_error_naming_the_argument(capsys, args, message):
    """Refused by the parser before any file or model is read: one error line naming the
    argument, exit 2, as every other mistake."""
    status, out, err = run_cli(capsys, "missing.csv", "--model", "missing.pth", *args)
    assert (status, out) == (2, "")
    assert err == f"error: finseq predict: {message} (see finseq predict --help)\n"


def test_a_selection_is_parsed_to_what_it_says():
    """--last 1 is allowed; --since a date with an offset is that instant in UTC, naive."""
    parser = predict_module.build_parser()
    assert parser.parse_args(["a.csv", "--last", "1"]).last == 1
    since = parser.parse_args(["a.csv", "--since", "2018-12-01T05:00:00+05:00"]).since
    assert since == pd.Timestamp("2018-12-01") and since.tz is None


def test_an_interrupted_prediction_says_nothing_was_written(capsys, monkeypatch):
    def interrupted(argv, prog):
        raise KeyboardInterrupt

    monkeypatch.setattr(predict_module, "run", interrupted)
    status, out, err = run_cli(capsys, "a.csv")
    assert (status, out, err) == (130, "", "error: interrupted; nothing was written\n")


def test_the_help_says_what_each_argument_takes_and_its_default(capsys, monkeypatch):
    """`finseq predict --help` word for word (at 100 columns): the users' reference."""
    monkeypatch.setenv("COLUMNS", "100")
    status, out, _ = run_cli(capsys, "--help")
    assert status == 0
    assert out == (
        "usage: finseq predict [-h] [--model MODEL] [--last LAST | --since SINCE | --all] "
        "[--out OUT]\n"
        "                      [--calibration {none,temperature,move_direction,direction}]\n"
        "                      csv [csv ...]\n"
        "\n"
        "Probabilities of the -1/0/1 label for the bars of OHLCV files.\n"
        "\n"
        "positional arguments:\n"
        "  csv                   OHLCV CSV or Parquet files (one series each, or long-format "
        "panels with a\n"
        "                        Symbol column), directories or globs\n"
        "\n"
        "options:\n"
        "  -h, --help            show this help message and exit\n"
        "  --model MODEL         default: models/model.pth\n"
        "  --last LAST           the last N bars of each file (default 1)\n"
        "  --since SINCE         every bar from DATE on\n"
        "  --all                 every bar with a full window\n"
        "  --out OUT             write CSV here (default: a table on stdout)\n"
        "  --calibration {none,temperature,move_direction,direction}\n"
        "                        as evaluate.calibration (default: direction, params.yaml's "
        "default)\n"
    )


def test_the_history_note_counts_the_predicted_bars_short_of_full_history(
    trained, tmp_path, capsys
):
    """--all on a file 50 bars longer than full history: the first predicted bar's history is
    itself and the bars before it, which the file has but does not predict; the bars short
    of full history are the first `needed` minus that, not every predicted bar (word for
    word)."""
    source = trained.raw[0]
    checkpoint = torch.load(trained.model_file, weights_only=True)
    seq_len = checkpoint["seq_len"]
    needed = ModelInputs(seq_len=seq_len, scaler=None).bars_for_full_history
    lines = source.read_text().splitlines(keepends=True)
    tail = tmp_path / "tail.csv"
    tail.write_text(lines[0] + "".join(lines[-(needed + 50) :]))
    status, _, err = run_cli(
        capsys, "--model", trained.model_file, "--all", "--out", tmp_path / "o.csv", tail
    )
    assert status == 0
    first = needed + 50 - len(read_predictions(tmp_path / "o.csv")) + 1
    assert seq_len - 1 <= first < needed
    assert err == (
        f"note: {tail}: {needed - first} predicted bar(s) have fewer than {needed} bars "
        f"of history (the first has {first}); their features still depend on where the "
        "file starts, so they may differ from a longer file's by more than 1e-6\n"
    )


def test_since_the_last_bar_predicts_that_bar(trained, tmp_path, capsys):
    last = pd.read_csv(trained.raw[0])["Date"].iloc[-1]
    out = tmp_path / "last.csv"
    predict_ok(capsys, "--model", trained.model_file, "--since", last, "--out", out, trained.raw[0])
    assert read_predictions(out)["timestamp"].astype(str).tolist() == [last]


def test_the_model_defaults_to_the_pipelines_and_is_a_path():
    parser = predict_module.build_parser()
    assert parser.parse_args(["a.csv"]).model == Path("models/model.pth")
    assert parser.parse_args(["a.csv", "--model", "m.pth"]).model == Path("m.pth")


def test_the_model_cards_results_show_n_a_for_a_figure_that_is_null():
    """eval.json writes a figure that is not a number as null; the card says n/a, not a crash."""
    from finseq.card import metrics_section

    test = {"samples": 10, "skill": None, "accuracy": 0.4, "majority_accuracy": None}
    lines = metrics_section(
        {"test": {**test, "sharpe": None, "buy_hold_sharpe": None}, "seeds": {}}, "holdout"
    )
    assert "| skill (1 - loss / prior loss) | n/a |" in lines
    assert "| accuracy, majority baseline | 0.400, n/a |" in lines
    assert "| Sharpe after costs, buy-and-hold | n/a, n/a |" in lines


@pytest.mark.parametrize("target", ["the input", "the model", "a link", "a device"])
def test_an_output_that_would_destroy_something_is_refused_before_any_work(
    tmp_path, capsys, target
):
    """--out over the CSV it reads, the model, a symbolic link or /dev/null would replace
    it with a regular file of predictions."""
    raw = tmp_path / "in.csv"
    raw.write_text("kept")
    model = tmp_path / "model.pth"
    model.write_bytes(b"kept")
    link = tmp_path / "link.csv"
    link.symlink_to(raw)
    out, problem = {
        "the input": (raw, f"is {raw}, which this command reads; give another name"),
        "the model": (model, f"is {model}, which this command reads; give another name"),
        "a link": (link, "is a symbolic link; give the file itself"),
        "a device": (Path("/dev/null"), "is not a regular file (a device or a pipe)"),
    }[target]
    status, _, err = run_cli(capsys, "--model", model, "--out", out, raw)
    assert (status, err) == (2, f"error: --out {out}: {problem}\n")
    assert raw.read_text() == "kept" and model.read_bytes() == b"kept"
    assert Path("/dev/null").is_char_device()


def test_an_output_the_system_refuses_to_write_is_one_line(trained, tmp_path, capsys):
    out = Path("/proc/finseq-predictions.csv")  # root may write anywhere but here
    status, _, err = run_cli(capsys, "--model", trained.model_file, "--out", out, trained.raw[0])
    assert status == 2 and err.count("\n") == 1
    assert err.startswith(f"error: --out {out}: ")


def test_a_model_whose_probabilities_are_not_numbers_is_refused(trained, tmp_path, capsys):
    checkpoint = torch.load(trained.model_file, weights_only=True)
    name = next(iter(checkpoint["state_dict"]))
    checkpoint["state_dict"][name] = torch.full_like(checkpoint["state_dict"][name], np.nan)
    broken = tmp_path / "nan.pth"
    save_checkpoint(checkpoint, broken)
    out = tmp_path / "p.csv"
    status, _, err = run_cli(capsys, "--model", broken, "--out", out, trained.raw[0])
    assert status == 2 and not out.exists()
    assert err == (
        f"error: {broken}: its probabilities for sp500 at 2018-12-31 00:00:00 are not numbers "
        "(weights that are not finite?); rebuild it with `dvc repro train`\n"
    )


def test_ctrl_c_while_the_command_imports_is_one_line(capsys, monkeypatch):
    from finseq import cli

    def importing(command, rest):
        raise KeyboardInterrupt  # as during `import torch`, before predict's own handler

    monkeypatch.setattr(cli, "_run", importing)
    with pytest.raises(SystemExit) as raised:
        cli.main(["predict", "a.csv"])
    assert raised.value.code == 130
    assert capsys.readouterr().err == "error: interrupted; nothing was written\n"
