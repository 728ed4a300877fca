"""Output-space statistics from teacher-forced passes (see `rejuv.method.attribution.response_token_stats`).

Mean next-token entropy over response positions, mean top-1 probability,
held-out NLL of the gold tokens, the entropy gap to the base, the distribution
of per-position entropies, and the tokens whose entropy fell most against the
base (with counts).
"""

from __future__ import annotations

import math

import torch

from rejuv.method.attribution import TokenStats

COLLAPSE_NATS = 0.18  # entropy below this at T=1 has been reported as a collapse warning
HIST_BINS = 40


def output_stats(stats: list[TokenStats], base: list[TokenStats] | None, gold: list[list[int]],
                 vocab_size: int, tokenizer=None, top_tokens: int = 15) -> dict:
    """Numbers for one checkpoint; `gold[i]` are the target ids at sample i's response positions."""
    entropy = torch.cat([s.entropy for s in stats]).double()
    top1 = torch.cat([s.top1 for s in stats]).double()
    nll = -torch.cat([s.gold_logprob for s in stats]).double()
    edges = torch.linspace(0.0, math.log(vocab_size), HIST_BINS + 1, dtype=torch.float64)
    counts = torch.histc(entropy.clamp(max=float(edges[-1])), bins=HIST_BINS, min=0.0, max=float(edges[-1]))
    out = {
        "positions": int(entropy.numel()),
        "samples": len(stats),
        "mean_entropy": float(entropy.mean()),
        "median_entropy": float(entropy.median()),
        "p10_entropy": float(torch.quantile(entropy, 0.1)),
        "p90_entropy": float(torch.quantile(entropy, 0.9)),
        "frac_below_collapse": float((entropy < COLLAPSE_NATS).double().mean()),
        "top1_mass": float(top1.mean()),
        "nll": float(nll.mean()),
        "entropy_histogram": {"edges": edges.tolist(), "counts": [int(c) for c in counts.tolist()]},
        "entropy_gap_to_base": None,
        "tokens_lost_entropy": [],
    }
    if base is not None:
        base_entropy = torch.cat([s.entropy for s in base]).double()
        out["entropy_gap_to_base"] = float(entropy.mean() - base_entropy.mean())
        ids = torch.tensor([t for g in gold for t in g], dtype=torch.long)
        drop = base_entropy - entropy
        per_token: dict[int, list[float]] = {}
        for token, d in zip(ids.tolist(), drop.tolist(), strict=True):
            per_token.setdefault(token, []).append(d)
        ranked = sorted(per_token.items(), key=lambda kv: (-sum(kv[1]), kv[0]))[:top_tokens]
        out["tokens_lost_entropy"] = [
            {"token_id": t, "token": tokenizer.convert_ids_to_tokens(t) if tokenizer is not None else str(t),
             "text": tokenizer.decode([t]) if tokenizer is not None else str(t),
             "count": len(d), "mean_entropy_drop": sum(d) / len(d), "total_entropy_drop": sum(d)}
            for t, d in ranked]
    return out
