"""How the lab judges a claim over seeds: a difference must clear a stated margin, or the claim is not shown.

A claim "A > B" is judged on the per-seed differences d = A − B. The margin is the larger of a floor
(`FLOOR`, 2 points of pass@1) and the one-sided 95% t bound of the mean, t(n−1)·sd/√n:
- held: mean(d) ≥ margin;
- reversed: mean(d) ≤ −margin (B is ahead beyond the margin);
- not shown: anything between, ties included (a tie never holds a claim);
- not judged: fewer than two seeds (no spread to judge against).
The per-seed count of d > 0 is reported beside every verdict.
"""

from __future__ import annotations

import math

from rejuv.stats import mean_sd

FLOOR = 0.02
# One-sided 95% quantiles of Student's t by degrees of freedom (scipy.stats.t.ppf(0.95, df)).
T95 = {1: 6.314, 2: 2.920, 3: 2.353, 4: 2.132, 5: 2.015, 6: 1.943, 7: 1.895, 8: 1.860, 9: 1.833, 10: 1.812,
       15: 1.753, 20: 1.725, 30: 1.697}


def t95(df: int) -> float:
    return T95.get(df) or T95[max(k for k in T95 if k <= df)]


def judge(diffs: list[float], floor: float = FLOOR) -> dict:
    """Verdict, margin, mean ± sd and per-seed count for the per-seed differences of a claim "A > B"."""
    stats = mean_sd(diffs)
    ahead = sum(1 for d in diffs if d > 0)
    if stats["n"] < 2:
        return {"verdict": "not judged", "margin": None, "value": stats, "seeds_ahead": ahead, "seeds": len(diffs)}
    margin = max(floor, t95(stats["n"] - 1) * stats["sd"] / math.sqrt(stats["n"]))
    mean = stats["mean"]
    verdict = "held" if mean >= margin else "reversed" if mean <= -margin else "not shown"
    return {"verdict": verdict, "margin": margin, "value": stats, "seeds_ahead": ahead, "seeds": len(diffs)}


def every_seed(values: list[float], holds) -> dict:
    """A threshold checked seed by seed (a premise): held only when it holds on every seed."""
    ok = sum(1 for v in values if holds(v))
    return {"verdict": "held" if values and ok == len(values) else "did not hold", "seeds_ahead": ok,
            "seeds": len(values), "value": mean_sd(values), "margin": None}
