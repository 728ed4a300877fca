"""The dead-group forecast's arithmetic, by hand (diagnostics/groups.py)."""

import math

import pytest

from rejuv.diagnostics.groups import group_forecast, measured_dead_share, p_star


def test_every_prompt_always_wrong_or_always_right_leaves_every_group_dead():
    wrong = group_forecast([0, 0, 0], samples=8, group=8, prompts_per_step=4)
    assert (wrong["dead_share"], wrong["all_wrong_share"], wrong["signal_prompts_per_step"]) == (1.0, 1.0, 0.0)
    right = group_forecast([8, 8], samples=8, group=8, prompts_per_step=4)
    assert (right["dead_share"], right["all_right_share"], right["pass@1"], right["pass@group"]) == (1.0, 1.0, 1.0, 1.0)


def test_the_exact_estimator_draws_a_group_from_the_samples_without_replacement():
    # 4 right of 8, groups of 8: every group holds them all, so it is never one reward (the plug-in says 2/256)
    half = group_forecast([4], samples=8, group=8, prompts_per_step=8)
    assert half["dead_share"] == 0.0 and half["estimator"].startswith("exact")
    # 1 right of 16, groups of 8: all wrong when the right one is left out, C(15, 8)/C(16, 8) = 1/2
    one = group_forecast([1], samples=16, group=8, prompts_per_step=8)
    assert one["all_wrong_share"] == pytest.approx(0.5) and one["all_right_share"] == 0.0
    assert one["signal_prompts_per_step"] == pytest.approx(4.0) and one["pass@group"] == pytest.approx(0.5)
    # two prompts: 0 of 16 (dead) and 16 of 16 (dead), and 8 of 16: C(8, 8)/C(16, 8) each way
    mixed = group_forecast([0, 16, 8], samples=16, group=8, prompts_per_step=6)
    assert mixed["dead_share"] == pytest.approx((1 + 1 + 2 / math.comb(16, 8)) / 3)


def test_fewer_samples_than_the_group_use_the_plug_in_and_say_so():
    f = group_forecast([2, 0], samples=4, group=8, prompts_per_step=2)
    assert f["dead_share"] == pytest.approx((2 * 0.5 ** 8 + 1.0) / 2) and f["estimator"].startswith("plug-in")


def test_p_star_is_where_a_group_is_all_wrong_half_the_time():
    assert p_star(8) == pytest.approx(0.0830, abs=1e-4)  # arXiv 2606.18487's 0.083 for groups of 8
    assert (1 - p_star(5)) ** 5 == pytest.approx(0.5)
    assert group_forecast([0, 1], samples=8, group=8, prompts_per_step=1)["below_p_star"]  # pass@1 1/16 < 0.083


def test_what_grpo_measured_is_the_first_tenth_of_its_steps():
    rows = [{"frac_reward_zero_std": v} for v in [1.0, 0.5] + [0.0] * 18]
    assert measured_dead_share(rows) == 0.75  # 2 of 20 steps
    assert measured_dead_share(rows[:3]) == 1.0  # at least one step
    assert measured_dead_share([{"reward": 1.0}]) is None
