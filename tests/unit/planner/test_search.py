"""The planner's search and ranking logic on hand-made numbers."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rejuv.errors import RejuvError
from rejuv.planner.search import (
    Candidate,
    accuracy_kept,
    against_diagnose,
    best,
    check_probes_learn,
    entropy_recovered,
    probe_metrics,
    search_grid,
    search_score,
    separated,
    slope,
    uncertainty,
)


# -- components -------------------------------------------------------------------------------------
def test_grid_skips_the_checkpoint_itself_and_refuses_bad_values():
    grid = search_grid([0.5, 1.0, 0.5], [0.0, 0.02])
    assert grid == [Candidate(0.5, 0.0), Candidate(0.5, 0.02), Candidate(1.0, 0.02)]
    assert grid[1].label == "alpha0.5-rho0.02"
    with pytest.raises(RejuvError, match=r"alpha values must lie in \[0, 1\]"):
        search_grid([1.2], [0.0])
    with pytest.raises(RejuvError, match=r"rho values must lie in \[0, 1\)"):
        search_grid([0.5], [1.0])
    with pytest.raises(RejuvError, match="grid is empty"):
        search_grid([1.0], [0.0])


def test_search_score_trades_entropy_recovered_against_accuracy_kept():
    # SFT 0.1 nats, base 0.5: a candidate at 0.3 recovers half the gap; beyond the base counts as all of it.
    assert entropy_recovered(0.3, sft=0.1, base=0.5) == pytest.approx(0.5)
    assert entropy_recovered(0.9, 0.1, 0.5) == 1.0 and entropy_recovered(0.05, 0.1, 0.5) == 0.0
    assert entropy_recovered(0.9, sft=0.6, base=0.5) == 0.0  # nothing was lost
    assert accuracy_kept(0.4, 0.8) == 0.5 and accuracy_kept(0.0, 0.0) == 1.0
    assert search_score(0.5, 0.5) == pytest.approx(0.5)
    assert search_score(1.0, 0.0) == 0.0 and search_score(0.0, 1.0) == 0.0  # the base model; a collapsed one
    assert search_score(0.64, 1.0) == pytest.approx(0.8)


@given(recovered=st.floats(-1, 2), candidate=st.floats(0, 1), sft=st.floats(0, 1))
def test_the_search_score_never_exceeds_its_parts(recovered, candidate, sft):
    """pass@1 0.25 against the SFT's 0.125 once gave accuracy_kept 2.0, and a candidate with 3% of the entropy
    back a score of 0.24: a share kept is at most 1, and the score at most the larger of its parts."""
    kept = accuracy_kept(candidate, sft)
    assert 0.0 <= kept <= 1.0
    assert search_score(recovered, kept) <= max(min(1.0, max(recovered, 0.0)), kept) + 1e-12
    assert accuracy_kept(0.25, 0.125) == 1.0 and search_score(0.03, accuracy_kept(0.25, 0.125)) == pytest.approx(
        0.03 ** 0.5)


def test_probe_metrics_by_hand():
    rows = [{"step": i + 1, "reward": r, "grad_norm": g, "update_l2": u, "entropy": e}
            for i, (r, g, u, e) in enumerate([(0.0, 2.0, 0.1, 1.0), (0.2, 2.0, 0.1, 0.9),
                                              (0.4, 4.0, 0.3, 0.8), (0.6, 4.0, 0.3, 0.7),
                                              (0.8, 2.0, 0.2, 0.6), (1.0, 4.0, 0.2, 0.5),
                                              (1.0, 2.0, 0.1, 0.4), (1.0, 4.0, 0.3, 0.3)])]
    m = probe_metrics(rows)
    assert m["steps"] == 8
    assert m["reward_start"] == pytest.approx(0.1)  # first quarter: steps 1-2
    assert m["reward_end"] == pytest.approx(1.0)  # last quarter: steps 7-8
    assert m["reward_gain"] == pytest.approx(0.9)
    assert m["grad_to_update"] == pytest.approx(3.0 / 0.2)
    assert m["entropy_slope"] == pytest.approx(-0.1)
    assert m["reward_end_sd"] == 0.0 and m["reward_end_se"] == 0.0 and m["end_steps"] == 2
    assert m["samples_seen"] is None
    m = probe_metrics([{"reward": r} for r in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.2, 0.6)], completions_per_step=16)
    assert m["reward_end"] == pytest.approx(0.4) and m["reward_end_sd"] == pytest.approx(0.2 * math.sqrt(2))
    assert m["reward_end_se"] == pytest.approx(0.2) and m["samples_seen"] == 128 and m["end_samples"] == 32
    assert slope([1.0, 3.0, 5.0]) == pytest.approx(2.0) and slope([4.0]) is None
    one = probe_metrics([{"reward": 0.5}])
    assert one["reward_end"] == 0.5 and one["reward_end_se"] is None  # one step: no spread to estimate
    with pytest.raises(RejuvError, match="no rewards"):
        probe_metrics([{"step": 1}])


def test_recommendation_is_the_best_probe_outcome_with_stated_tie_breaks():
    outcomes = {"a": {"reward_end": 0.5, "reward_slope": 0.01}, "b": {"reward_end": 0.7, "reward_slope": 0.0},
                "c": {"reward_end": 0.7, "reward_slope": 0.02}, "d": {"reward_end": 0.7, "reward_slope": 0.02}}
    assert best(outcomes) == "c"  # b ties on outcome but climbs slower; d ties on both and comes later
    assert best({"x": {"reward_end": 0.0, "reward_slope": None}}) == "x"


def test_uncertainty_names_the_candidates_the_probes_cannot_separate():
    def probe(end, se):
        return {"reward_end": end, "reward_end_se": se, "end_steps": 2}

    probes = {"a": probe(0.50, 0.05), "b": probe(0.40, 0.05), "c": probe(0.10, 0.05)}
    # a − b = 0.10 < 2·√(0.05² + 0.05²) = 0.141: tied; a − c = 0.40: separated.
    assert separated(probes["a"], probes["b"]) is False and separated(probes["a"], probes["c"]) is True
    sure = uncertainty(probes, "a")
    assert sure["separated"] is False and sure["tied_with"] == ["b"] and "cannot separate a from b" in sure["text"]
    assert uncertainty({"a": probes["a"], "c": probes["c"]}, "a")["separated"] is True
    blind = uncertainty({"a": probe(0.5, None), "c": probe(0.1, None)}, "a")
    assert blind["separated"] is False and blind["tied_with"] == ["c"] and "cannot be estimated" in blind["text"]
    assert separated(probe(0.5, 0.0), probe(0.4, 0.0)) is True and separated(probe(0.5, 0.0), probe(0.5, 0.0)) is False


def test_plan_says_when_it_hands_over_a_flagged_checkpoint():

    entries = {"e2": {"flagged": False, "signals": {}},
               "e32": {"flagged": True, "signals": {"entropy": "mean entropy 0.079 nats is below the collapse level"}}}
    probes = {"e2": {"reward_end": 0.1, "reward_end_se": 0.05, "end_steps": 1, "samples_seen": 64},
              "e32": {"reward_end": 0.3, "reward_end_se": None, "end_steps": 1, "samples_seen": 64}}
    sure = uncertainty(probes, "e32")
    verdict = against_diagnose("e32", entries, probes, sure)
    assert verdict["disagrees"] and verdict["flagged"] == ["e32"]
    assert "although diagnose flagged it as over-trained (mean entropy 0.079" in verdict["text"]
    assert "standard error unknown, 1 step(s), 64 completions" in verdict["text"] and sure["text"] in verdict["text"]
    agreed = against_diagnose("e2", entries, probes, uncertainty(probes, "e2"))
    assert not agreed["disagrees"]
    assert agreed["text"] == "diagnose flagged e32; the recommendation (e2) is not among them"


def test_a_reward_that_never_pays_is_refused():
    flat = {"a": {"rewards": [0.0, 0.0]}, "b": {"rewards": [0.0, 0.0, 0.0]}}
    with pytest.raises(RejuvError, match=r"averaged 0 at every step of every RL probe"):
        check_probes_learn(flat, ["tiny:always_zero"])
    check_probes_learn({"a": {"rewards": [0.0, 0.0]}, "b": {"rewards": [0.0, 1.0]}}, ["r"])


# -- the recipe on tiny models -----------------------------------------------------------------------


