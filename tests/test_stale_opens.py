"""Stale opens: the calendar years in which a series' Open equals the previous Close on most
bars (a vendor's fill) are found, noted per file and recorded in meta and metrics/data.json."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, tiny_params

from finseq.backtest import stale_open_fill_share
from finseq.inputs import load_series
from finseq.panel import run_prepare
from finseq.paths import DATA_METRICS, PREPARED_DIR
from finseq.prepare import STALE_OPEN_MIN_BARS, STALE_OPEN_SHARE, stale_open_periods
from finseq.synthetic import synthetic_ohlcv

SP500 = ROOT / "data" / "raw" / "sp500.csv"


def years_mostly_opening_at_the_previous_close(path) -> list[int]:
    """By hand from the CSV's own columns: the years with at least 20% of bars whose Open
    is the previous row's Close, as the file writes both."""
    raw = pd.read_csv(path, parse_dates=["Date"])
    stale = (raw["Open"] == raw["Close"].shift()).iloc[1:]
    share = stale.groupby(raw["Date"].dt.year.iloc[1:]).mean()
    return [int(year) for year in share.index[share >= 0.2]]


def frame_with_stale_opens(dates: pd.DatetimeIndex, stale: np.ndarray) -> pd.DataFrame:
    """A frame as load_series returns it whose bar i opens at the previous close where
    stale[i] is set, else 0.3% above or below it."""
    rng = np.random.default_rng(0)
    close = 100.0 * np.exp(np.cumsum(0.01 * rng.standard_normal(len(dates))))
    previous = np.concatenate([[100.0], close[:-1]])
    away = np.where(np.arange(len(dates)) % 2 == 0, 1.003, 0.997)
    open_ = np.where(stale, previous, previous * away)
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * 1.005,
            "low": np.minimum(open_, close) * 0.995,
            "close": close,
            "volume": 1e6,
        },
        index=pd.DatetimeIndex(dates, name="timestamp"),
    )


def a_year_of_bars(year: int, judged: int) -> pd.DatetimeIndex:
    """The last business day of the year before (the series' first bar, which has no
    previous close) and the first `judged` business days of `year`."""
    before = pd.bdate_range(end=f"{year - 1}-12-31", periods=1)
    return before.append(pd.bdate_range(f"{year}-01-01", periods=judged))


def stale_years(years: dict[int, float]) -> pd.DataFrame:
    """Business days of the given years; in each, its share of bars opening stale (the first
    ones of the year)."""
    dates = pd.bdate_range(f"{min(years)}-01-01", f"{max(years)}-12-31")
    stale = np.zeros(len(dates), dtype=bool)
    for year, share in years.items():
        rows = np.flatnonzero(dates.year == year)
        stale[rows[: round(share * len(rows))]] = True
    return frame_with_stale_opens(dates, stale)


def test_sp500_opens_at_the_previous_close_in_1999_to_2006_and_in_2012_13():
    flagged = years_mostly_opening_at_the_previous_close(SP500)
    assert flagged == [*range(1999, 2007), 2012, 2013]
    raw = pd.read_csv(SP500, parse_dates=["Date"])
    judged = raw.iloc[1:]
    stale = raw["Open"] == raw["Close"].shift()
    in_first = judged["Date"].dt.year.between(1999, 2006)
    frame = load_series(SP500)

    sliced = stale_open_periods(frame.loc[:"2008"])
    assert (
        sliced
        == [
            {
                "first": "1999-01-05T00:00:00",  # the file's second bar: the first has no previous
                "last": judged["Date"][in_first].iloc[-1].isoformat(),
                "bars": int(in_first.sum()),
                "stale_bars": int(stale[1:][in_first].sum()),
                "share": pytest.approx(stale[1:][in_first].mean()),
            }
        ]
    )
    assert sliced[0]["last"] == "2006-12-29T00:00:00"
    assert sliced[0]["share"] == pytest.approx(0.896, abs=0.001)
    whole = stale_open_periods(frame)
    assert [(period["first"][:4], period["last"][:4]) for period in whole] == [
        ("1999", "2006"),
        ("2012", "2013"),
    ]


def test_series_whose_opens_gap_from_the_previous_close_have_none():
    generated = synthetic_ohlcv(2000, seed=3).rename(columns=str.lower).set_index("date")
    assert stale_open_periods(generated) == []
    assert stale_open_periods(load_series(ROOT / "data" / "raw" / "nasdaq.csv")) == []
    dates = pd.bdate_range("2001-01-01", "2003-12-31")
    assert stale_open_periods(frame_with_stale_opens(dates, np.zeros(len(dates), bool))) == []


def test_an_open_within_a_millionth_of_the_previous_close_is_stale_and_a_cent_at_5000_is_not():
    dates = pd.bdate_range("2001-01-01", "2001-12-31")
    frame = frame_with_stale_opens(dates, np.ones(len(dates), bool))
    previous = frame["close"].shift().to_numpy()
    frame["open"] = previous * (1 + 5e-7)
    assert len(stale_open_periods(frame)) == 1
    scale = 5000.0 / frame["close"].to_numpy()
    for name in ("open", "high", "low", "close"):
        frame[name] = frame[name] * scale  # every close 5000
    frame["open"] = 5000.01
    frame["high"] = 5001.0
    assert stale_open_periods(frame) == []


@pytest.mark.parametrize(
    ("stale_bars", "flagged"),
    [(49, False), (50, True)],  # of 250 bars: 19.6% and 20.0%
)
def test_a_year_is_flagged_from_a_fifth_of_its_bars_on(stale_bars, flagged):
    assert STALE_OPEN_SHARE == 0.2
    dates = a_year_of_bars(2001, judged=250)
    stale = np.zeros(len(dates), dtype=bool)
    stale[1 : 1 + stale_bars] = True
    periods = stale_open_periods(frame_with_stale_opens(dates, stale))
    expected = [
        {
            "first": "2001-01-01T00:00:00",
            "last": dates[-1].isoformat(),
            "bars": 250,
            "stale_bars": stale_bars,
            "share": stale_bars / 250,
        }
    ]
    assert periods == (expected if flagged else [])


@pytest.mark.parametrize(("judged", "flagged"), [(19, False), (20, True)])
def test_a_year_of_fewer_than_20_bars_is_not_judged(judged, flagged):
    assert STALE_OPEN_MIN_BARS == 20
    dates = a_year_of_bars(2001, judged=judged)
    periods = stale_open_periods(frame_with_stale_opens(dates, np.ones(len(dates), bool)))
    assert len(periods) == int(flagged)


def test_consecutive_flagged_years_merge_into_one_period_with_their_pooled_share():
    frame = stale_years({2001: 0.9, 2002: 0.3, 2003: 0.5, 2004: 0.05, 2005: 0.95})
    by_year = pd.Series(frame.index.year[1:])
    bars = by_year.value_counts().sort_index()
    stale = (frame["open"] == frame["close"].shift()).iloc[1:].groupby(by_year.to_numpy()).sum()
    periods = stale_open_periods(frame)
    assert [(period["first"][:10], period["last"][:10]) for period in periods] == [
        ("2001-01-02", "2003-12-31"),  # 2001-01-01 is the series' first bar
        ("2005-01-03", "2005-12-30"),
    ]
    first_three = [2001, 2002, 2003]
    assert periods[0]["bars"] == bars[first_three].sum()
    assert periods[0]["stale_bars"] == stale[first_three].sum()
    assert periods[0]["share"] == pytest.approx(stale[first_three].sum() / bars[first_three].sum())
    assert (periods[1]["bars"], periods[1]["stale_bars"]) == (bars[2005], stale[2005])


def test_flagged_years_apart_by_a_year_without_bars_are_two_periods():
    frame = stale_years({2001: 1.0, 2002: 1.0, 2003: 1.0})
    frame = frame[frame.index.year != 2002]
    assert [period["first"][:4] for period in stale_open_periods(frame)] == ["2001", "2003"]


def test_intraday_bars_that_open_at_the_previous_close_are_not_flagged():
    hours = pd.date_range("2001-01-02 09:30", periods=2000, freq="h")
    assert stale_open_periods(frame_with_stale_opens(hours, np.ones(len(hours), bool))) == []


@pytest.fixture
def prepared_with_a_stale_year(tmp_path, capsys):
    """Two 400-bar files from 2000-01-03: stale.csv opens at the previous close all through
    2000, fresh.csv is generated. Prepared with the tiny params under tmp_path; with what it
    printed."""
    files = []
    for name, seed in (("stale", 1), ("fresh", 2)):
        raw = synthetic_ohlcv(400, seed=seed)
        if name == "stale":
            in_2000 = (raw["Date"].dt.year == 2000).to_numpy()
            in_2000[0] = False
            raw.loc[in_2000, "Open"] = raw["Close"].shift()[in_2000]
            raw["High"] = raw[["High", "Open"]].max(axis=1)
            raw["Low"] = raw[["Low", "Open"]].min(axis=1)
        path = tmp_path / "raw" / f"{name}.csv"
        path.parent.mkdir(exist_ok=True)
        raw.to_csv(path, index=False)
        files.append(str(path))
    params = tiny_params(data={"files": files, "workers": 1})
    data = run_prepare(params, tmp_path)
    return files, data, capsys.readouterr().err


def test_prepare_notes_each_file_and_period_and_records_them(prepared_with_a_stale_year, tmp_path):
    files, data, printed = prepared_with_a_stale_year
    stale_2000 = pd.bdate_range("2000-01-04", "2000-12-29")
    expected = {
        "stale": [
            {
                "first": "2000-01-04T00:00:00",
                "last": "2000-12-29T00:00:00",
                "bars": len(stale_2000),
                "stale_bars": len(stale_2000),
                "share": 1.0,
            }
        ],
        "fresh": [],
    }
    assert json.loads((tmp_path / DATA_METRICS).read_text())["stale_opens"] == expected
    meta = json.loads((tmp_path / PREPARED_DIR / "meta.json").read_text())
    assert meta["stale_opens"] == data.meta["stale_opens"] == expected
    notes = [line for line in printed.splitlines() if "stale opens" in line]
    assert notes == [
        f"note: {files[0]}: Open equals the previous Close on 100% of bars in 2000 (stale "
        "opens): the gap feature is about 0 there, and the backtest's next-open fill is the "
        "signal bar's close"
    ]


def test_the_evaluate_stage_counts_the_traded_windows_in_stale_open_periods(capsys):
    """Four traded windows and one untraded (no next return): a's 2001 window lies in its
    period, b's in none of its own (a's period does not count for b): 1 of 4."""
    table = pd.DataFrame(
        {
            "timestamp": ["2001-06-01", "2003-06-02", "2001-06-01", "2004-01-05", "2001-06-04"],
            "series": ["a", "a", "b", "b", "a"],
            "next_return": [0.01, 0.0, -0.01, 0.02, np.nan],
        }
    )
    meta = {
        "stale_opens": {
            "a": [{"first": "1999-01-04T00:00:00", "last": "2002-12-31T00:00:00"}],
            "b": [],
        }
    }
    assert stale_open_fill_share(table, meta) == 0.25
    assert "25% of the traded out-of-sample windows" in capsys.readouterr().err
    assert stale_open_fill_share(table, {"stale_opens": {"a": [], "b": []}}) == 0.0
    assert capsys.readouterr().err == ""
    assert stale_open_fill_share(table, {}) is None
