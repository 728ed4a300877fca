"""The rewards by hand: graded answers (any of a list), the format term, the Brier term, and which rewards are
the outcome a shaping term is added to."""

import pytest

from rejuv.errors import RejuvError
from rejuv.train.rewards import (
    exact_match_reward,
    format_reward,
    math_verify_reward,
    needs_answer,
    outcome_index,
    resolve_reward,
)


def test_graded_rewards_take_any_of_a_list_of_answers():
    completions = ["so \\boxed{7}", "\\boxed{8}", "no answer"]
    assert math_verify_reward(completions, answer=["7", ["9", "8"], "1"]) == [1.0, 1.0, -1.0]
    assert exact_match_reward(completions, answer=["7", "8", "no answer"]) == [1.0, 1.0, 1.0]
    with pytest.raises(RejuvError, match="needs an 'answer' column"):
        math_verify_reward(completions)


def test_the_format_term_wants_exactly_one_boxed_answer():
    assert format_reward(["\\boxed{1}", "\\boxed{1} \\boxed{2}", "1"]) == [1.0, 0.0, 0.0]


def test_the_outcome_reward_is_named_only_when_another_term_shapes_it():
    assert outcome_index(["math_verify"]) is None  # the reward is the outcome: TRL's own share counts it
    assert outcome_index(["format", "exact_match", "brier"]) == 1
    assert outcome_index(["format", "brier"]) is None  # no outcome to count groups on
    assert needs_answer(["format"]) is False and needs_answer(["format", "brier"]) is True


def test_a_reward_by_module_and_function_and_an_unknown_one():
    assert resolve_reward("rejuv.train.rewards:format_reward") is format_reward
    with pytest.raises(RejuvError, match="unknown reward 'accuracy'"):
        resolve_reward("accuracy")
    with pytest.raises(RejuvError, match="cannot be imported"):
        resolve_reward("no.such.module:f")
