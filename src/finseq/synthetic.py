"""Generated OHLCV series in the raw CSV format, for tests, control experiments and scaling runs.

Returns follow r_t = drift * regime_t + volatility * scale_t * noise_t, where regime_t is a
hidden +1/-1 Markov chain that stays in place with probability `persistence`.
With drift = 0 the direction is unpredictable (the no-signal control); with drift > 0 the
recent bars reveal the regime, so the next bars' direction is predictable (planted signal).
With `volatility_ratio` > 1, scale_t is a second hidden chain, 1 or `volatility_ratio`,
with the same persistence: the size of the next moves is predictable from the recent
ones (a planted volatility regime), their direction still not unless drift > 0.

    python -m finseq.synthetic --series 50 --bars 5000 --out data/synthetic
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def synthetic_ohlcv(
    n_bars: int,
    seed: int,
    *,
    start: str = "2000-01-03",
    freq: str = "B",
    volatility: float = 0.01,
    drift: float = 0.0,
    persistence: float = 0.98,
    volatility_ratio: float = 1.0,
) -> pd.DataFrame:
    """A frame with the raw CSV columns: Date, Open, High, Low, Close, Volume."""
    rng = np.random.default_rng(seed)
    switches = rng.random(n_bars) > persistence
    regime = np.where(np.cumsum(switches) % 2 == 0, 1.0, -1.0) * rng.choice([-1.0, 1.0])
    scale = np.ones(n_bars)
    if volatility_ratio != 1.0:
        # Its own stream, so that a ratio of 1 gives the same series as before it existed.
        calm = np.cumsum(np.random.default_rng([seed, 1]).random(n_bars) > persistence) % 2
        scale = np.where(calm == 0, 1.0, volatility_ratio)
    returns = drift * regime + volatility * scale * rng.standard_normal(n_bars)
    close = 100.0 * np.exp(np.cumsum(returns))
    previous_close = np.concatenate([[100.0], close[:-1]])
    open_ = previous_close * np.exp(0.2 * volatility * rng.standard_normal(n_bars))
    wick = np.abs(volatility * scale * rng.standard_normal((2, n_bars)))
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    volume = np.round(1e6 * np.exp(0.3 * rng.standard_normal(n_bars)))
    dates = pd.date_range(start, periods=n_bars, freq=freq)
    return pd.DataFrame(
        {"Date": dates, "Open": open_, "High": high, "Low": low, "Close": close, "Volume": volume}
    )


def write_panel(
    directory: str | Path, n_series: int, n_bars: int, seed: int = 0, **kwargs: float
) -> list[Path]:
    """Writes `n_series` independent CSVs (series_000.csv, ...) and returns their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(n_series):
        path = directory / f"series_{index:03d}.csv"
        synthetic_ohlcv(n_bars, seed + index, **kwargs).to_csv(path, index=False)
        paths.append(path)
    return paths


def write_long_panel(
    path: str | Path, n_series: int, n_bars: int, seed: int = 0, **kwargs: float
) -> Path:
    """Writes write_panel's series as one long-format file (a Symbol column, S000, ...,
    rows by date then symbol): CSV, or Parquet for a .parquet `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [
        synthetic_ohlcv(n_bars, seed + index, **kwargs).assign(Symbol=f"S{index:03d}")
        for index in range(n_series)
    ]
    panel = pd.concat(frames, ignore_index=True).sort_values(["Date", "Symbol"], kind="stable")
    panel = panel[["Symbol", *frames[0].columns.drop("Symbol")]]
    if path.suffix.lower() == ".parquet":
        panel.to_parquet(path, index=False)
    else:
        panel.to_csv(path, index=False)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=50)
    parser.add_argument("--bars", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--drift", type=float, default=0.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    paths = write_panel(args.out, args.series, args.bars, args.seed, drift=args.drift)
    print(f"wrote {len(paths)} series of {args.bars} bars to {args.out}")


if __name__ == "__main__":
    main()
