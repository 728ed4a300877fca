"""Small statistics the reports share: mean ± sd over seeds, average ranks, Spearman correlation."""

from __future__ import annotations

import math
import statistics


def mean_sd(values: list[float | None]) -> dict:
    """Mean, sample sd (None below two values) and count of the known, finite values."""
    known = [v for v in values if v is not None and not math.isnan(v)]
    if not known:
        return {"mean": None, "sd": None, "n": 0}
    sd = statistics.stdev(known) if len(known) > 1 else None
    return {"mean": statistics.fmean(known), "sd": sd, "n": len(known)}


def format_mean_sd(cell: dict, scale: float = 1.0, digits: int = 1, signed: bool = False,
                   missing: str = "–") -> str:
    """`mean ± sd` scaled (e.g. 100 for %), without the ± part when there is no sd."""
    if cell["mean"] is None:
        return missing
    sign = "+" if signed else ""
    sd = f" ± {scale * cell['sd']:.{digits}f}" if cell["sd"] is not None else ""
    return f"{scale * cell['mean']:{sign}.{digits}f}{sd}"

def ranks(values: list[float]) -> list[float]:
    """Average ranks (1 = smallest), ties shared."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks

def spearman(xs: list[float | None], ys: list[float | None]) -> float | None:
    """Rank correlation over the pairs where both are known; None below three pairs or for a constant side."""
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if x is not None and y is not None]
    if len(pairs) < 3:
        return None
    rx, ry = ranks([p[0] for p in pairs]), ranks([p[1] for p in pairs])
    if len(set(rx)) == 1 or len(set(ry)) == 1:
        return None
    # Pearson's r of the average ranks; statistics.correlation(method="ranked") needs Python 3.12
    return statistics.correlation(rx, ry)
