"""Mean ± sd over seeds, as the lab report and the planner check state them."""

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
