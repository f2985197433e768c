"""finseq.synthetic: the generated series the controls and the skill-split tests rely on."""

from __future__ import annotations

import numpy as np
import pytest

from finseq.synthetic import synthetic_ohlcv


def test_a_volatility_ratio_of_one_gives_the_series_generated_before_it_existed():
    """The same bytes as the generator without the volatility chain: its draws come from a
    stream of their own, and a scale of exactly 1 multiplies nothing."""
    frame = synthetic_ohlcv(500, 3, drift=0.002)
    rng = np.random.default_rng(3)
    switches = rng.random(500) > 0.98
    regime = np.where(np.cumsum(switches) % 2 == 0, 1.0, -1.0) * rng.choice([-1.0, 1.0])
    returns = 0.002 * regime + 0.01 * rng.standard_normal(500)
    np.testing.assert_array_equal(frame["Close"], 100.0 * np.exp(np.cumsum(returns)))
    assert frame.equals(synthetic_ohlcv(500, 3, drift=0.002, volatility_ratio=1.0))


def test_a_volatility_regime_scales_the_moves_and_leaves_their_direction_to_chance():
    """Ratio 3: the calm bars' returns have sd 0.01, the stormy ones' 0.03 (the chain
    recomputed here from its own stream); no drift, so either sign is as likely."""
    frame = synthetic_ohlcv(20_000, 5, volatility_ratio=3.0)
    returns = np.diff(np.log(frame["Close"].to_numpy()), prepend=np.log(100.0))
    stormy = np.cumsum(np.random.default_rng([5, 1]).random(20_000) > 0.98) % 2 == 1
    assert 0.3 < stormy.mean() < 0.7
    assert np.std(returns[~stormy]) == pytest.approx(0.01, rel=0.05)
    assert np.std(returns[stormy]) == pytest.approx(0.03, rel=0.05)
    assert abs(np.mean(returns > 0) - 0.5) < 0.02
