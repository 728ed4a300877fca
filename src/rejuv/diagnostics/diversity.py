"""How different a checkpoint's sampled answers to one prompt are: 1 − self-BLEU.

Self-BLEU (Zhu et al. 2018, Texygen) scores each sample by BLEU-4 against the other samples of the same prompt
as references and averages; 1 − self-BLEU is the diversity AESL (ICLR 2026, "Getting Your LLMs Ready for
Reinforcement Learning with Lightweight SFT") tracks during SFT, beside entropy, to stop where it peaks.
BLEU here: uniform weights over 1- to 4-grams, clipped counts against the most frequent reference, the
brevity penalty against the closest reference length (ties: the shorter), and zero counts smoothed as
NLTK's `method1` does (ε = 0.1 over the hypothesis's n-gram count), so that two short answers that share
no 4-gram still compare; with no word in common BLEU is 0 (NLTK's `sentence_bleu` gives the same
numbers). Words and punctuation are tokens (`\\w+` or one other non-space character), so `3+4=7` is five
tokens whatever the model's tokenizer.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from rejuv.errors import RejuvError

TOKENS = re.compile(r"\w+|[^\w\s]")
MAX_N = 4
EPSILON = 0.1


def tokens(text: str) -> list[str]:
    return TOKENS.findall(text)


def _ngrams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def bleu(hypothesis: list[str], references: list[list[str]]) -> float:
    """Sentence BLEU-4 of `hypothesis` against `references` (token lists), smoothed; 0 for an empty one."""
    if not hypothesis or not references:
        return 0.0
    log_precision = 0.0
    for n in range(1, MAX_N + 1):
        found = _ngrams(hypothesis, n)
        most = Counter()
        for reference in references:
            for gram, count in _ngrams(reference, n).items():
                most[gram] = max(most[gram], count)
        clipped = sum(min(count, most[gram]) for gram, count in found.items())
        if n == 1 and clipped == 0:
            return 0.0  # not one word in common: no smoothing makes that similar (NLTK returns 0 too)
        total = max(1, sum(found.values()))
        log_precision += math.log((clipped if clipped else EPSILON) / total) / MAX_N
    closest = min((len(r) for r in references), key=lambda r: (abs(r - len(hypothesis)), r))
    brevity = 1.0 if len(hypothesis) > closest else math.exp(1 - closest / len(hypothesis))
    return brevity * math.exp(log_precision)


def self_bleu(samples: list[str]) -> float | None:
    """The mean BLEU of each sample against the others of its prompt; None with fewer than two samples."""
    if len(samples) < 2:
        return None
    words = [tokens(s) for s in samples]
    return sum(bleu(w, words[:i] + words[i + 1:]) for i, w in enumerate(words)) / len(words)


def sample_diversity(groups: list[list[str]]) -> dict:
    """Self-BLEU and diversity (1 − self-BLEU) over prompts, each prompt's samples a group."""
    scores = [s for s in (self_bleu(g) for g in groups) if s is not None]
    mean = sum(scores) / len(scores) if scores else None
    return {"self_bleu": mean, "diversity": None if mean is None else 1.0 - mean, "prompts": len(scores),
            "samples_per_prompt": max((len(g) for g in groups), default=0)}


def coverage_samples(k: int) -> int:
    """Samples per RL prompt for coverage and diversity: 0 (off), or at least two to compare with each other."""
    if k == 1:
        raise RejuvError("1 sample per prompt has no diversity to measure; give 2 or more (TailSFT's pass@16: 16), "
                         "or 0 for none")
    return k
