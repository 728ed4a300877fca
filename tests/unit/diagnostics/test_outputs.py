"""Output statistics (diagnostics/outputs.py) on hand-made per-position figures where each number is known."""

from __future__ import annotations

import math

import pytest
import torch

from rejuv.diagnostics.outputs import COLLAPSE_NATS, output_stats
from rejuv.method.attribution import TokenStats


def stats(entropies: list[float], top1: list[float], gold_logprob: list[float]) -> TokenStats:
    return TokenStats(torch.tensor(entropies), torch.tensor(top1), torch.zeros(len(entropies), dtype=torch.long),
                      torch.tensor(gold_logprob))


def test_means_quantiles_and_collapse_share_over_every_response_position():
    sft = [stats([0.1, 0.5], [0.9, 0.6], [-0.1, -0.5]), stats([1.0, 0.05, 0.2], [0.4, 0.99, 0.8],
                                                               [-1.0, -0.01, -0.2])]
    out = output_stats(sft, None, [[5, 6], [5, 7, 8]], vocab_size=16)
    every = [0.1, 0.5, 1.0, 0.05, 0.2]
    assert (out["positions"], out["samples"]) == (5, 2)
    assert out["mean_entropy"] == pytest.approx(sum(every) / 5, rel=1e-6)
    assert out["median_entropy"] == pytest.approx(0.2, rel=1e-6)
    assert out["top1_mass"] == pytest.approx((0.9 + 0.6 + 0.4 + 0.99 + 0.8) / 5, rel=1e-6)
    assert out["nll"] == pytest.approx((0.1 + 0.5 + 1.0 + 0.01 + 0.2) / 5, rel=1e-6)
    assert out["frac_below_collapse"] == pytest.approx(sum(e < COLLAPSE_NATS for e in every) / 5)
    histogram = out["entropy_histogram"]
    assert histogram["edges"][-1] == pytest.approx(math.log(16)) and sum(histogram["counts"]) == 5
    assert out["entropy_gap_to_base"] is None and out["tokens_lost_entropy"] == []


def test_the_tokens_that_lost_most_entropy_against_the_base_are_ranked_with_their_counts():
    base = [stats([2.0, 2.0], [0.2, 0.2], [-2.0, -2.0]), stats([2.0, 1.0, 0.3], [0.2, 0.5, 0.9], [-2.0, -1.0, -0.3])]
    sft = [stats([0.1, 1.5], [0.9, 0.3], [-0.1, -1.5]), stats([0.2, 1.0, 0.3], [0.9, 0.5, 0.9], [-0.2, -1.0, -0.3])]
    gold = [[5, 6], [5, 7, 8]]  # token 5 twice: drops 1.9 and 1.8
    out = output_stats(sft, base, gold, vocab_size=16, top_tokens=2)
    assert out["entropy_gap_to_base"] == pytest.approx((0.1 + 1.5 + 0.2 + 1.0 + 0.3 - 7.3) / 5, rel=1e-6)
    first, second = out["tokens_lost_entropy"]
    assert (first["token_id"], first["count"]) == (5, 2)
    assert first["total_entropy_drop"] == pytest.approx(3.7, rel=1e-6)
    assert first["mean_entropy_drop"] == pytest.approx(1.85, rel=1e-6)
    assert (second["token_id"], second["count"]) == (6, 1) and second["text"] == "6"  # no tokenizer: the id
