"""LSTM/GRU baselines for 3-class classification of OHLCV time series, run as a DVC pipeline."""

__version__ = "0.1.0"
