"""`rejuv eval`: sampled evaluation with Pass@1 averaged over K samples and unbiased pass@k.

The evaluation itself (protocol, engines, kept results, output) is the component
`rejuv.evaluation.sampled`; this recipe runs it and prints a table.
"""

from __future__ import annotations

from pathlib import Path

from rejuv.evaluation.sampled import EvalConfig, evaluate
from rejuv.options import Recipe


def run_eval(cfg: EvalConfig) -> dict:
    """Run `rejuv eval`; returns the report written to `<out>/eval.json`."""
    return evaluate(cfg)


def _calibration_cells(cal: dict) -> list[str]:
    fmt = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    return [f"{100 * cal['stated']:.0f}", fmt(cal["brier"]), fmt(cal["ece"])]


def summary_table(cfg: EvalConfig, report: dict) -> str:
    """What `rejuv eval` prints: a row per checkpoint and benchmark, pass@1 and pass@k in %, and stated
    confidence with its Brier score and ECE where the completions state one."""
    ks = sorted({k for r in report["results"] for k in r["pass@k"]}, key=int)
    stated = any((r.get("calibration") or {}).get("stated") for r in report["results"])
    header = ["checkpoint", "benchmark", "problems", "K", "pass@1"] + [f"pass@{k}" for k in ks if k != "1"]
    header += ["stated conf. %", "Brier", "ECE"] if stated else []
    rows = [[Path(r["checkpoint"]).name, r["benchmark"], str(r["problems"]), str(r["samples_per_problem"]),
             f"{100 * r['pass@1']:.1f}"] + [f"{100 * r['pass@k'][k]:.1f}" for k in ks if k != "1"]
            + (_calibration_cells(r["calibration"]) if stated else [])
            for r in report["results"]]
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


RECIPE = Recipe(EvalConfig, run_eval, summary_table)
