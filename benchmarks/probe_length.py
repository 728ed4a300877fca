"""How long must an RL probe be to tell two starts apart? Read off the lab's committed full GRPO runs.

    python benchmarks/probe_length.py [--records benchmarks/lab/small]

`rejuv plan` runs a short GRPO probe from each candidate and ranks them by the mean reward over the probe's
last quarter; it calls two candidates separated when their outcomes differ by more than two standard errors
of the difference (each from the per-step rewards). Every committed seed record holds the reward of each of
its arms' 500 GRPO steps, so a probe of n steps is the first n steps of the full run from the same start.
For every pair of arms on every seed, and for n = 25 (the planner check's probes) up to 500, this reports
whether the probe separates the pair, and whether a separated pair is in the order the full run's pass@1
after RL gives, by the gap between the two in pass@1 after RL (points). No run is made: the figures are the
records' own.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
from pathlib import Path

LENGTHS = (25, 50, 100, 200, 300, 500)
GAPS = ((0.0, 3.0), (3.0, 6.0), (6.0, 10.0), (10.0, 100.0))  # pass@1 after RL, points


def probe(rewards: list, steps: int) -> tuple[float, float]:
    """A probe's outcome (mean reward over its last quarter) and that mean's standard error."""
    tail = [float(r) for r in rewards[:steps][-max(2, steps // 4):] if r is not None]
    return statistics.fmean(tail), statistics.stdev(tail) / math.sqrt(len(tail))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", default="benchmarks/lab/small")
    args = parser.parse_args()
    records = [json.loads(p.read_text()) for p in sorted(Path(args.records).glob("seed-*.json"))]
    pairs = []
    for record in records:
        rows = record["rows"]
        for a, b in itertools.combinations(sorted(rows), 2):
            gap = 100 * (rows[a]["after"]["overall"] - rows[b]["after"]["overall"])
            outcomes = {n: (probe(rows[a]["rl"]["reward"], n), probe(rows[b]["rl"]["reward"], n)) for n in LENGTHS}
            pairs.append({"seed": record["seed"], "pair": f"{a} vs {b}", "gap_after_rl": gap, "probes": {
                n: {"difference": ma - mb, "separated": abs(ma - mb) > 2 * math.hypot(sa, sb),
                    "agrees": (ma - mb) * gap > 0} for n, ((ma, sa), (mb, sb)) in outcomes.items()}})
    table = []
    for low, high in GAPS:
        group = [p for p in pairs if low <= abs(p["gap_after_rl"]) < high]
        if not group:
            continue
        row = {"gap_points": f"{low:g}-{high:g}", "pairs": len(group)}
        for n in LENGTHS:
            separated = [p for p in group if p["probes"][n]["separated"]]
            row[f"separated@{n}"] = len(separated)
            row[f"right_order@{n}"] = sum(p["probes"][n]["agrees"] for p in separated)
        table.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps({"seeds": len(records), "pairs": len(pairs), "lengths": LENGTHS}), flush=True)
    head = "| gap after RL (points) | pairs | " + " | ".join(f"{n} steps" for n in LENGTHS) + " |"
    print("\n" + head + "\n|" + "---|" * (2 + len(LENGTHS)))
    for row in table:
        cells = [f"{row[f'separated@{n}']} ({row[f'right_order@{n}']} right)" for n in LENGTHS]
        print(f"| {row['gap_points']} | {row['pairs']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
