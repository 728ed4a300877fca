"""The seed records committed under benchmarks/lab/ are what BENCHMARKS.md and `make demo` quote: each folder still
pools into a report with today's code (a change to the record format or its checks that refused them would leave
the published figures without their source), and every claim of the report is decided over all its seeds."""

import json
from pathlib import Path

import pytest

from rejuv.lab.demo import DemoConfig, run_demo

LAB_RECORDS = Path(__file__).resolve().parents[2] / "benchmarks" / "lab"
# folder → the preset whose world its records were run in
FOLDERS = {"small": "small", "planner": "planner", "random": "small"}


@pytest.mark.parametrize("folder", sorted(FOLDERS))
def test_committed_records_pool_into_a_report(folder, tmp_path):
    records = sorted((LAB_RECORDS / folder).glob("seed-*.json"))
    assert records, f"benchmarks/lab/{folder} holds no seed record"
    first = json.loads(records[0].read_text())
    seeds = sorted(json.loads(r.read_text())["seed"] for r in records)
    report = run_demo(DemoConfig(preset=FOLDERS[folder], seeds=seeds, arms=first["arms"],
                                 pool=[str(LAB_RECORDS / folder)], out=str(tmp_path / "report")))
    assert report["seeds"] == seeds and report["arms"] == first["arms"]
    assert report["claims"], "records of a claims preset gave no claim"
    for claim in report["premise"] + report["claims"]:
        assert claim["verdict"] in ("held", "reversed", "not shown", "did not hold"), claim
        assert claim["seeds"] == len(seeds), claim
    assert report["provenance"]["ran_here"] == [] and report["provenance"]["read_from_records"] == seeds
