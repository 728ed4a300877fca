"""Sample diversity (diagnostics/diversity.py): BLEU as NLTK computes it, and self-BLEU over a prompt's samples."""

from __future__ import annotations

import pytest

from rejuv.diagnostics.diversity import bleu, coverage_samples, sample_diversity, self_bleu, tokens
from rejuv.errors import RejuvError


@pytest.mark.parametrize("hypothesis, references, nltk", [
    # nltk.translate.bleu_score.sentence_bleu(refs, hyp, smoothing_function=SmoothingFunction().method1), 3.10.4,
    # on the same tokens; over 3,000 random cases the two agree to 1e-16
    ("3+4=7. \\boxed{7}", ["3+4=7. \\boxed{7}", "3 + 4 is 7 \\boxed{7}"], 1.0),
    ("the answer is 12", ["answer: 12", "it is 13 so the answer is 13"], 0.4272870063962341),
    ("x y", ["x y z w v u", "x"], 0.316227766016838),  # shorter than every 2- to 4-gram: smoothed, penalised
    ("= d a", ["b"], 0.0),  # no word in common
])
def test_bleu_gives_nltks_numbers(hypothesis, references, nltk):
    assert bleu(tokens(hypothesis), [tokens(r) for r in references]) == pytest.approx(nltk, abs=1e-12)


def test_words_and_punctuation_are_tokens():
    assert tokens("3+4=7. \\boxed{7}") == ["3", "+", "4", "=", "7", ".", "\\", "boxed", "{", "7", "}"]


def test_self_bleu_is_one_for_copies_and_falls_as_samples_differ():
    same = ["12 + 5 = 17"] * 4
    assert self_bleu(same) == pytest.approx(1.0)
    varied = ["12 + 5 = 17", "5 + 12 is 17", "seventeen", "12 and 5 make 17"]
    assert 0.0 <= self_bleu(varied) < 0.5
    assert self_bleu(["only one"]) is None
    found = sample_diversity([same, varied, ["alone"]])
    assert found["prompts"] == 2 and found["samples_per_prompt"] == 4  # a prompt with one sample is left out
    assert found["self_bleu"] == pytest.approx((1.0 + self_bleu(varied)) / 2)
    assert found["diversity"] == pytest.approx(1.0 - found["self_bleu"])
    assert sample_diversity([]) == {"self_bleu": None, "diversity": None, "prompts": 0, "samples_per_prompt": 0}


def test_coverage_takes_no_samples_or_at_least_two():
    assert coverage_samples(0) == 0 and coverage_samples(2) == 2 and coverage_samples(16) == 16
    with pytest.raises(RejuvError, match="1 sample per prompt has no diversity"):
        coverage_samples(1)
