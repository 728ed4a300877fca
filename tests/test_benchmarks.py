"""The scripts behind BENCHMARKS.md run, at a tiny size, so a refactor cannot break the commands it quotes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.mark.slow
def test_reset_ratio_runs_and_its_union_grows_with_rho_and_targets(tmp_path):
    result = subprocess.run([sys.executable, str(BENCHMARKS / "reset_ratio.py"), "--shape", "tiny", "--sft-steps", "3",
                             "--samples", "4", "--work", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    row = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("{\"base\"")))
    assert row["targets"] == 32 and row["neurons_total"] == 4 * (64 + 32 + 32 + 64 + 128 + 128 + 128)
    union = row["union"]
    for rho in ("0.001", "0.003", "0.01", "0.03"):
        by_targets = [union[f"{rho}@{n}"] for n in (1, 4)]
        assert by_targets == sorted(by_targets)
    for n in (1, 4):
        by_rho = [union[f"{rho}@{n}"] for rho in ("0.001", "0.003", "0.01", "0.03")]
        assert by_rho == sorted(by_rho) and 0 < by_rho[-1] <= 1
    assert "| targets | ρ = 0.001" in result.stdout
