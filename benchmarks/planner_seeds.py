"""The planner check seed by seed: each rule's shortfall from the best start after full RL, in points.

    python benchmarks/planner_seeds.py /tmp/pooled-planner/report.json

Reads the `planner.per_seed` section of a `rejuv demo --preset planner` report (a run, or committed records
pooled with `--pool`) and prints one Markdown row per seed: the best start and its post-RL overall pass@1,
then for the planner's recommendation and every rule of the field and every probe-free rule the points it
fell short of that start ("–" where its pick is unknown: a signal the seed's record lacks, or a start no full
RL ran from). No run is made: the figures are the report's own.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rejuv.lab.plan_check import PROBE_FREE, rule_picks
from rejuv.planner.field_rules import FIELD_RULES


def shortfalls(check: dict, rule: str) -> dict[str, float | None]:
    """Rule name → shortfall (fraction of pass@1) for one seed's check, the planner's first."""
    return {"planner": check["shortfall"][rule],
            **{name: found.get("shortfall") for name, found in rule_picks(check).items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", type=Path)
    args = parser.parse_args()
    planner = json.loads(args.report.read_text()).get("planner") or {}
    if not planner.get("per_seed"):
        raise SystemExit(f"{args.report}: no planner check in this report (a `rejuv demo --preset planner` report)")
    names = ["planner", *FIELD_RULES, *PROBE_FREE]
    print("| seed | best start (pass@1 after RL) | planner's pick | " + " | ".join(names[1:]) + " | planner |")
    print("|---" * (len(names) + 3) + "|")
    for seed, check in sorted(planner["per_seed"].items(), key=lambda item: int(item[0])):
        found = shortfalls(check, planner["rule"])
        cells = ["–" if found[n] is None else f"{100 * found[n]:.1f}" for n in names]
        best = f"{check['best_start']} ({100 * check['post_rl'][check['best_start']]:.1f})"
        print(f"| {seed} | {best} | {check['recommended'][planner['rule']]} | " + " | ".join(cells[1:])
              + f" | {cells[0]} |")


if __name__ == "__main__":
    main()
