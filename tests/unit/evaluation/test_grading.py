import threading

import pytest

from rejuv.errors import RejuvError
from rejuv.evaluation.grading import grade, grade_many
from rejuv.evaluation.verl_reward import compute_score, last_boxed, normalize_answer
from rejuv.train.rewards import REWARDS, exact_match_reward, format_reward, math_verify_reward, resolve_reward

# (gold, completion, correct) labelled by hand.
LABELLED = [
    ("0.5", "so x = \\boxed{1/2}", True),
    ("0.5", "\\boxed{\\frac{1}{2}}", True),
    ("1/2", "\\boxed{0.5}", True),
    ("7", "3+4=7. \\boxed{7}", True),
    ("7", "first \\boxed{3} then \\boxed{7}", True),  # the last box counts
    ("7", "\\boxed{8}", False),
    ("7", "the answer is 7", False),  # no boxed answer
    ("12", "\\boxed{12.0}", True),
    ("\\sqrt{2}", "\\boxed{\\sqrt{2}}", True),
    ("3", "\\boxed{-3}", False),
    ("x+1", "\\boxed{1+x}", True),
]


def test_last_boxed_handles_nesting_and_absence():
    assert last_boxed("a \\boxed{\\frac{1}{2}} b") == "\\frac{1}{2}"
    assert last_boxed("\\boxed{1} \\boxed{ 2 }") == "2"
    assert last_boxed("no box") is None and last_boxed("\\boxed{unclosed") is None
    assert normalize_answer(" $1,000$. ") == "1000"


@pytest.fixture(autouse=True)
def fresh_verdicts(monkeypatch):
    """Each test grades for real: no verdict remembered from another test."""
    import rejuv.evaluation.grading as grading

    monkeypatch.setattr(grading, "_VERDICTS", type(grading._VERDICTS)())


def test_grading_agrees_with_hand_labels():
    golds, completions, labels = zip(*LABELLED, strict=True)
    assert grade_many(list(golds), list(completions)) == list(labels)
    assert grade("0.5", "\\boxed{1/2}")


@pytest.mark.slow
def test_grading_works_from_a_worker_thread():
    golds, completions, labels = zip(*LABELLED, strict=True)
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("grades", grade_many(list(golds), list(completions))))
    thread.start()
    thread.join(timeout=120)
    assert out["grades"] == list(labels)


def test_rewards_on_hand_made_completions():
    completions = ["3+4=7. \\boxed{7}", "\\boxed{8}", "7", "\\boxed{7} \\boxed{7}"]
    answers = ["7"] * 4
    assert math_verify_reward(completions, answer=answers) == [1.0, -1.0, -1.0, 1.0]
    assert exact_match_reward(completions, answer=answers) == [1.0, -1.0, 1.0, 1.0]
    assert format_reward(completions) == [1.0, 1.0, 0.0, 0.0]
    chat = [[{"role": "assistant", "content": "\\boxed{7}"}]]
    assert math_verify_reward(chat, answer=["7"]) == [1.0]


def test_reward_lookup():
    assert set(REWARDS) >= {"math_verify", "exact_match", "format"}
    assert resolve_reward("format") is format_reward
    assert resolve_reward("tiny:contains_seven")(["a7", "b"]) == [1.0, -1.0]
    with pytest.raises(RejuvError, match="unknown reward 'accuracy'"):
        resolve_reward("accuracy")
    with pytest.raises(RejuvError, match="cannot be imported"):
        resolve_reward("no_such_module:f")
    with pytest.raises(RejuvError, match="'answer' column"):
        math_verify_reward(["\\boxed{1}"])


def test_a_verdict_is_computed_once_and_errors_are_not_remembered(monkeypatch):
    """Two rewards grading the same completions (math_verify and brier) pay for Math-Verify once."""
    import rejuv.evaluation.grading as grading

    calls = []

    def counting(gold, answer, use_signals):
        calls.append((gold, answer))
        if answer == "boom":
            raise TimeoutError("Math-Verify overran")
        return gold == answer

    monkeypatch.setattr(grading, "_verify", counting)
    texts = ["so \\boxed{41}", "so \\boxed{40}", "no answer", "\\boxed{boom}"]
    golds = ["41", "41", "41", "41"]
    assert grade_many(golds, texts) == [True, False, False, False]
    assert grade_many(golds, texts) == [True, False, False, False]
    assert calls == [("41", "41"), ("41", "40"), ("41", "boom"), ("41", "boom")]  # only the overrun is redone


def test_the_exported_verl_reward_scores_as_rejuv_grades():
    """export-verl's reward.py (standalone, for verl's workers) and `rl --reward math_verify` agree, on
    answers Math-Verify parses and on the ones where both fall back to comparing normalised text."""
    cases = [("2", "so \\boxed{2}"), ("0.5", "\\boxed{1/2}"), ("2", "\\boxed{3}"), ("2", "2"),
             ("1,234", "\\boxed{1234}"), ("x", "\\boxed{x.}"), ("\\frac{1}{3}", "\\boxed{\\frac{2}{6}}"),
             ("", "\\boxed{}"), ("{", "\\boxed{ }"), ("7", "\\boxed{7} then \\boxed{8}")]
    expected = [1.0 if ok else -1.0 for ok in grade_many([g for g, _ in cases], [c for _, c in cases])]
    assert [compute_score("rejuv", c, g) for g, c in cases] == expected
    assert expected.count(1.0) >= 4 and expected.count(-1.0) >= 3  # both verdicts occur


def test_a_list_of_gold_answers_means_any_of_everywhere_answers_are_graded():
    """`["4", "four"]` once became the string "['4', 'four']", so a right \\boxed{4} was graded wrong."""
    golds = [["4", "four"], ["4", "four"], ["4", "four"], "4"]
    texts = ["\\boxed{4}", "\\boxed{four}", "\\boxed{5}", "\\boxed{4}"]
    assert grade_many(golds, texts) == [True, True, False, True]
    assert math_verify_reward(texts, answer=golds) == [1.0, 1.0, -1.0, 1.0]
    assert exact_match_reward(texts, answer=golds) == [1.0, 1.0, -1.0, 1.0]
    assert [compute_score("rejuv", t, "4", {"answers": ["4", "four"]}) for t in texts[:3]] == [1.0, 1.0, -1.0]
