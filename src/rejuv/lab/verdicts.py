"""How the lab judges a claim over seeds: a difference must clear a stated margin, or the claim is not shown.

A claim "A > B" is judged on the per-seed differences d = A − B. The margin is the larger of a floor
(`FLOOR`, 2 points of pass@1) and the one-sided 95% t bound of the mean, t(n−1)·sd/√n:
- held: mean(d) ≥ margin;
- reversed: mean(d) ≤ −margin (B is ahead beyond the margin);
- not shown: anything between, ties included (a tie never holds a claim);
- not judged: fewer than two seeds (no spread to judge against).
The per-seed count of d > 0 is reported beside every verdict, with the two-sided 95% interval of the mean
difference and, for a claim the seeds do not decide, the smallest true difference they would have shown
with 80% power (so "not shown" says how large an effect could still hide there).
"""

from __future__ import annotations

import math

from rejuv.report.stats import mean_sd

FLOOR = 0.02
# Quantiles of Student's t by degrees of freedom 1-30 (one-sided 95%, two-sided 95%, one-sided 80%; scipy's
# t.ppf(q, df) to three decimals); above 30 the value at 30, a little wider than the truth.
T95 = (6.314, 2.920, 2.353, 2.132, 2.015, 1.943, 1.895, 1.860, 1.833, 1.812, 1.796, 1.782, 1.771, 1.761, 1.753,
       1.746, 1.740, 1.734, 1.729, 1.725, 1.721, 1.717, 1.714, 1.711, 1.708, 1.706, 1.703, 1.701, 1.699, 1.697)
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
T80 = (1.376, 1.061, 0.978, 0.941, 0.920, 0.906, 0.896, 0.889, 0.883, 0.879, 0.876, 0.873, 0.870, 0.868, 0.866,
       0.865, 0.863, 0.862, 0.861, 0.860, 0.859, 0.858, 0.858, 0.857, 0.856, 0.856, 0.855, 0.855, 0.854, 0.854)


def _t(table: tuple[float, ...], df: int) -> float:
    return table[min(df, len(table)) - 1]


def t95(df: int) -> float:
    return _t(T95, df)


def judge(diffs: list[float], floor: float = FLOOR) -> dict:
    """Verdict, margin, mean ± sd, the two-sided 95% interval of the mean, and per-seed count for the per-seed
    differences of a claim "A > B"; and the effect the seeds could detect: the true mean difference that would
    clear the margin on four runs of five (80% power), margin + t80(n−1)·sd/√n."""
    stats = mean_sd(diffs)
    ahead = sum(1 for d in diffs if d > 0)
    if stats["n"] < 2:
        return {"verdict": "not judged", "margin": None, "value": stats, "seeds_ahead": ahead, "seeds": len(diffs),
                "interval": None, "detectable": None}
    se = stats["sd"] / math.sqrt(stats["n"])
    df = stats["n"] - 1
    margin = max(floor, t95(df) * se)
    mean = stats["mean"]
    verdict = "held" if mean >= margin else "reversed" if mean <= -margin else "not shown"
    return {"verdict": verdict, "margin": margin, "value": stats, "seeds_ahead": ahead, "seeds": len(diffs),
            "interval": [mean - _t(T975, df) * se, mean + _t(T975, df) * se],
            "detectable": margin + _t(T80, df) * se}


def every_seed(values: list[float], holds) -> dict:
    """A threshold checked seed by seed (a premise): held only when it holds on every seed."""
    ok = sum(1 for v in values if holds(v))
    return {"verdict": "held" if values and ok == len(values) else "did not hold", "seeds_ahead": ok,
            "seeds": len(values), "value": mean_sd(values), "margin": None, "interval": None, "detectable": None}
