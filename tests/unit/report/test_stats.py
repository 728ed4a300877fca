"""Statistics the reports share: Spearman with ties and missing values."""

import math

import pytest

from rejuv.report.stats import spearman

# -- components -------------------------------------------------------------------------------------


def test_spearman_by_hand_with_ties_and_missing_values():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks x: 1, 2.5, 2.5, 4; y: 1, 2, 3, 4 → r = 4.5 / sqrt(4.5 · 5)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(4.5 * 5))
    assert spearman([1, None, 2, 3], [3, 9, 2, 1]) == pytest.approx(-1.0)  # the pair with a gap is left out
    assert spearman([1, 2], [1, 2]) is None and spearman([1, 1, 1], [1, 2, 3]) is None


# -- the recipe on tiny models -----------------------------------------------------------------------


