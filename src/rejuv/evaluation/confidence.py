"""Stated confidence: parse it from a completion, reward it (Brier), and measure calibration (ECE, Brier).

Binary correctness rewards teach a model to answer with confidence whether or
not it knows; asking it to state a confidence and scoring that statement with
a proper scoring rule rewards knowing what it knows. The statement is the last
`confidence: X` in the completion (case-insensitive; `:` or `=`), X a
probability in [0, 1] or a percentage (`80%`). A missing or out-of-range
statement counts as no statement.
"""

from __future__ import annotations

import re

_STATED = re.compile(r"confidence\s*[:=]\s*([0-9]*\.?[0-9]+)\s*(%?)", re.IGNORECASE)


def stated_confidence(text: str) -> float | None:
    """The last stated confidence as a probability, or None."""
    matches = _STATED.findall(text)
    if not matches:
        return None
    number, percent = matches[-1]
    value = float(number) / (100.0 if percent else 1.0)
    return value if 0.0 <= value <= 1.0 else None


def brier_reward_values(confidences: list[float | None], correct: list[bool]) -> list[float]:
    """−(c − 1[correct])² per completion; −1 (the worst Brier score) when no confidence was stated."""
    return [-1.0 if c is None else -((c - float(ok)) ** 2) for c, ok in zip(confidences, correct, strict=True)]


def confidence_scores(confidences: list[float | None], correct: list[bool], bins: int = 10) -> dict:
    """Share of samples stating a confidence, and over those: Brier score, ECE (equal-width bins), mean confidence.

    ECE = Σ_b (n_b / n)·|accuracy_b − mean confidence_b|, a confidence of exactly 1 falling in the last bin.
    """
    pairs = [(c, float(ok)) for c, ok in zip(confidences, correct, strict=True) if c is not None]
    out = {"samples": len(confidences), "stated": len(pairs) / len(confidences) if confidences else 0.0,
           "brier": None, "ece": None, "mean_confidence": None, "accuracy_when_stated": None}
    if not pairs:
        return out
    n = len(pairs)
    out["brier"] = sum((c - y) ** 2 for c, y in pairs) / n
    out["mean_confidence"] = sum(c for c, _ in pairs) / n
    out["accuracy_when_stated"] = sum(y for _, y in pairs) / n
    ece = 0.0
    for b in range(bins):
        members = [(c, y) for c, y in pairs if min(int(c * bins), bins - 1) == b]
        if members:
            conf = sum(c for c, _ in members) / len(members)
            acc = sum(y for _, y in members) / len(members)
            ece += len(members) / n * abs(acc - conf)
    out["ece"] = ece
    return out
