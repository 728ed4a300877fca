"""The results `rejuv eval` keeps while it runs, so that a run interrupted after some of its (checkpoint,
benchmark) units resumes with the rest: each finished unit is written atomically beside the output
(`partial_dir`), and read back as untrusted input, checked against what this run would write; a damaged
one is named, set aside and evaluated again."""

from __future__ import annotations

import os
from pathlib import Path

from rejuv.errors import warn
from rejuv.io.records import Checked, DamagedRecord, read_json


def partial_dir(out: Path) -> Path:
    """Where finished results wait for the rest of the run (beside `out`, like its temporary folder)."""
    out = out.resolve()
    return out.parent / f".{out.name}.rejuv-partial"


def write_atomic(path: Path, text: str) -> None:
    """Write a kept result so that a reader never sees half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def check_kept_result(record, path: Path, name: str, problems: int, samples: int, ks: list[int]) -> dict:
    """A kept (checkpoint, benchmark) result read back, checked against what this run would write."""
    checked = Checked(path, "kept evaluation result")
    record = checked.of(record, "an object", "")
    result = checked.get(record, "result", "an object")
    for key, expected in (("benchmark", name), ("problems", problems), ("samples_per_problem", samples)):
        if result.get(key) != expected:
            checked.fail(f"['result'][{key!r}]", f"{result.get(key)!r} where this run has {expected!r}")
    checked.get(result, "pass@1", "a number", "['result']")
    passk = checked.get(result, "pass@k", "an object", "['result']")
    for k in ks:
        checked.get(passk, str(k), "a number", "['result']['pass@k']")
    counts = checked.get(result, "correct_per_problem", "a list", "['result']")
    if len(counts) != problems:
        checked.fail("['result']['correct_per_problem']", f"{len(counts)} counts for {problems} problems")
    for i, c in enumerate(counts):
        checked.index(c, samples + 1, f"['result']['correct_per_problem'][{i}]")
    checked.get(result, "calibration", "an object", "['result']")
    rows = checked.get(record, "samples", "a list")
    if len(rows) != problems * samples:
        checked.fail("['samples']", f"{len(rows)} rows for {problems} problems × {samples} samples")
    for i, row in enumerate(rows):
        row = checked.of(row, "an object", f"['samples'][{i}]")
        checked.get(row, "completion", "text", f"['samples'][{i}]")
        checked.get(row, "correct", "true or false", f"['samples'][{i}]")
    return record


def kept_result(unit: Path, name: str, problems: int, samples: int, ks: list[int]) -> dict | None:
    """The result an interrupted run kept for this unit, or None: a damaged one is set aside (renamed
    `*.damaged`, removed with the folder when the run ends) and evaluated again, never a dead end."""
    if not unit.exists():
        return None
    try:
        return check_kept_result(read_json(unit, "kept evaluation result"), unit, name, problems, samples, ks)
    except DamagedRecord as exc:
        aside = unit.with_name(unit.name + ".damaged")
        os.replace(unit, aside)
        warn(f"eval: {exc}; set aside as {aside.name}, and this result is evaluated again")
        return None
