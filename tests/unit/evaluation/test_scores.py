"""Pass@1 and the unbiased pass@k against the closed form and enumeration."""

import itertools
from math import comb

import pytest

from rejuv.evaluation.scores import pass_at_k, score


@pytest.mark.parametrize("n, c, k", [(4, 0, 1), (4, 1, 1), (4, 1, 2), (5, 2, 3), (6, 3, 6), (8, 5, 4), (10, 1, 10)])
def test_pass_at_k_matches_the_closed_form_and_enumeration(n, c, k):
    closed = 1 - comb(n - c, k) / comb(n, k)
    # Enumerate every k-subset of n samples, c of them correct.
    subsets = list(itertools.combinations([True] * c + [False] * (n - c), k))
    enumerated = sum(any(s) for s in subsets) / len(subsets)
    assert pass_at_k(n, c, k) == pytest.approx(closed, abs=1e-12) == pytest.approx(enumerated, abs=1e-12)


def test_score_averages_pass1_over_samples():
    result = score([[True, False, False, False], [True, True, True, True], [False] * 4], ks=[1, 4])
    assert result["pass@1"] == pytest.approx((0.25 + 1 + 0) / 3)
    assert result["pass@k"]["4"] == pytest.approx(2 / 3)
    assert result["correct_per_problem"] == [1, 4, 0]


