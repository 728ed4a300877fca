"""How a claim is judged over seeds: margin, interval and the effect the seeds could show."""

import pytest


def test_claims_are_judged_against_a_margin_by_hand():
    from rejuv.lab.verdicts import judge

    assert judge([0.10, 0.12, 0.08])["verdict"] == "held"  # mean 0.10; margin max(0.02, 2.92·0.02/√3 = 0.034)
    assert judge([0.10, -0.05, 0.01])["verdict"] == "not shown"  # inside the seeds' noise
    assert judge([0.0, 0.0, 0.0])["verdict"] == "not shown"  # a tie never holds
    assert judge([-0.10, -0.12, -0.08])["verdict"] == "reversed"
    assert judge([0.3])["verdict"] == "not judged"
    assert judge([0.01, 0.012, 0.011])["verdict"] == "not shown"  # below the 2-point floor
    result = judge([0.10, 0.12, 0.08])
    assert result["seeds_ahead"] == 3 and result["margin"] == pytest.approx(2.920 * 0.02 / 3 ** 0.5)
    se = 0.02 / 3 ** 0.5  # sd 0.02 over 3 seeds
    assert result["interval"] == pytest.approx([0.10 - 4.303 * se, 0.10 + 4.303 * se])  # two-sided 95%, t(2)
    assert result["detectable"] == pytest.approx(2.920 * se + 1.061 * se)  # margin + t80(2)·se: 80% power
    undecided = judge([0.10, -0.05, 0.01] * 4)  # twelve seeds, sd 0.0735
    se12 = undecided["value"]["sd"] / 12 ** 0.5
    assert undecided["verdict"] == "not shown"
    assert undecided["detectable"] == pytest.approx(max(0.02, 1.796 * se12) + 0.876 * se12)


