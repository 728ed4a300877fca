"""rejuv installed as a user installs it: the wheel built from this checkout, into a fresh virtualenv with the
constraints file, then run from outside the checkout (package data, templates and schema included)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tiny import build_model, perturbed, save, write_calibration

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_wheel_installs_in_a_fresh_virtualenv_and_runs_outside_the_checkout(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run = lambda *cmd, **kw: subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, **kw)  # noqa: E731
    built = run(sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-v", "-w", str(tmp_path / "wheels"))
    assert built.returncode == 0, built.stderr[-2000:]
    assert "deprecated" not in built.stdout + built.stderr  # the build backend's own warnings (-v) name none
    (wheel,) = (tmp_path / "wheels").glob("rejuv-*.whl")
    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", str(venv)).returncode == 0
    pip = run(str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"),
              str(wheel))
    assert pip.returncode == 0, pip.stderr[-3000:]
    work = tmp_path / "elsewhere"  # not the checkout: the installed package, not src/, is imported
    base, tok = build_model("llama", seed=0)
    save(base, tok, work / "base")
    save(perturbed(base, seed=1), tok, work / "sft")
    write_calibration(work / "calib.jsonl", n=6)
    rejuv = str(venv / "bin" / "rejuv")
    assert "apply" in run(rejuv, "--help", cwd=work).stdout
    applied = run(rejuv, "apply", "--base", "base", "--sft", "sft", "--calib", "calib.jsonl", "--out", "out",
                  "--no-progress", cwd=work)
    assert applied.returncode == 0, applied.stderr[-3000:]
    assert json.loads(applied.stdout)["neurons_reset"] > 0 and (work / "out" / "model.safetensors").is_file()
    where = run(str(venv / "bin" / "python"), "-c", "import rejuv, pathlib; print(pathlib.Path(rejuv.__file__).parent)",
                cwd=work).stdout.strip()
    assert Path(where).is_relative_to(venv)  # the installed copy ran
    package = Path(where)
    assert (package / "diagnostics" / "report.schema.json").is_file()
    assert {p.name for p in (package / "report" / "templates").glob("*.j2")} >= {"diagnose.html.j2", "lab.html.j2",
                                                                                 "plan.html.j2", "page.html.j2"}
    assert (package / "evaluation" / "verl_reward.py").is_file()  # export-verl copies it beside its parquet
