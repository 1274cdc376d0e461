import math

import pytest
from autofocus_drivers import LimitError, ZLimits


def test_limits_check_and_clamp():
    lim = ZLimits(-10.0, 20.0)
    assert lim.contains(0.0) and not lim.contains(20.5)
    assert lim.clamp(25.0) == 20.0 and lim.clamp(-11) == -10.0
    with pytest.raises(LimitError, match="outside the configured limits"):
        lim.check(30.0)
    with pytest.raises(LimitError):
        lim.check(math.nan)


def test_limits_reject_inverted():
    with pytest.raises(ValueError):
        ZLimits(5.0, 5.0)
