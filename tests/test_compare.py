"""How `evoengine compare` and `evoengine baselines` judge setups paired seed by seed."""

from __future__ import annotations

import pytest

from evoengine.report.compare import paired, verdict


def test_a_paired_difference_is_called_beyond_the_noise_only_when_its_interval_leaves_out_zero():
    wide = paired([0.0, 0.0, 0.0], [1.0, 2.0, 3.0])  # mean 2, sd 1, t(0.975, 2) = 4.303
    assert wide["mean"] == pytest.approx(2.0)
    half = 4.303 / 3**0.5
    assert wide["low"] == pytest.approx(2 - half, abs=1e-3) and wide["high"] == pytest.approx(2 + half, abs=1e-3)
    assert (wide["higher"], wide["lower"]) == (3, 0)
    assert verdict(wide) == "level: within the noise"
    assert verdict(paired([1.0, 2.0, 3.0, 4.0], [1.9, 3.1, 4.0, 5.0])) == "ahead, beyond the noise"
    assert verdict(paired([1.9, 3.1, 4.0, 5.0], [1.0, 2.0, 3.0, 4.0])) == "behind, beyond the noise"
    one = paired([1.0], [2.0])
    assert one["low"] is None and verdict(one) == "one seed: no interval"
