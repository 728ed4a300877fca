"""Two runs on one output: never a traceback, never a lost result."""

import json

import pytest

from tiny import build_model, save


@pytest.mark.slow
def test_two_identical_evals_started_together_never_trip_over_each_other(tmp_path):
    """Once, one of them failed 3 times in 3 with FileNotFoundError on the kept-results folder the other removed."""
    import subprocess
    import sys


    save(*build_model("llama", seed=0), tmp_path / "m")
    (tmp_path / "d.jsonl").write_text(json.dumps({"problem": "1+1?", "answer": "2"}) + "\n")
    cmd = [sys.executable, "-m", "rejuv.cli", "eval", str(tmp_path / "m"), "--data", str(tmp_path / "d.jsonl"),
           "--out", str(tmp_path / "out"), "--max-new-tokens", "4", "-k", "2", "--no-progress"]
    runs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(r.wait(timeout=300), r.stderr.read()) for r in runs]
    assert sorted(code for code, _ in results)[0] == 0, results  # at least one wrote the output
    for code, err in results:
        assert "Traceback" not in err and (code == 0 or "another rejuv run" in err), err
    assert (tmp_path / "out" / "eval.json").is_file() and not list(tmp_path.glob(".out.rejuv-*"))
