"""The results `rejuv eval` keeps while it runs, so that a run interrupted after some of its (checkpoint,
benchmark) units resumes with the rest: each finished unit is written atomically beside the output
(`partial_dir`), and read back as untrusted input, checked against what this run would write; a damaged
one is named, set aside and evaluated again."""

from __future__ import annotations

import os
from pathlib import Path

from rejuv.errors import warn
from rejuv.evaluation.confidence import confidence_scores
from rejuv.evaluation.scores import score
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
    """A kept (checkpoint, benchmark) result read back, checked against what this run would write: every
    sample row of the right kinds and in its place, and the scores equal to those its grades give (a kept
    score is never taken on trust: it is what the table and samples.jsonl would print)."""
    checked = Checked(path, "kept evaluation result")
    record = checked.of(record, "an object", "")
    result = checked.get(record, "result", "an object")
    for key, expected in (("benchmark", name), ("problems", problems), ("samples_per_problem", samples)):
        if result.get(key) != expected:
            checked.fail(f"['result'][{key!r}]", f"{result.get(key)!r} where this run has {expected!r}")
    checked.get(result, "checkpoint", "text", "['result']")
    checked.get(result, "chat_template_used", "true or false", "['result']")
    checked.get(result, "dtype", "text", "['result']")
    rows = checked.get(record, "samples", "a list")
    if len(rows) != problems * samples:
        checked.fail("['samples']", f"{len(rows)} rows for {problems} problems × {samples} samples")
    grades, confidences = [], []
    for i, row in enumerate(rows):
        where = f"['samples'][{i}]"
        row = checked.of(row, "an object", where)
        checked.get(row, "completion", "text", where)
        grades.append(checked.get(row, "correct", "true or false", where))
        for key, expected in (("problem", i // samples), ("sample", i % samples), ("benchmark", name),
                              ("checkpoint", result["checkpoint"])):
            if row.get(key) != expected:
                checked.fail(f"{where}[{key!r}]", f"{row.get(key)!r} where this row's place gives {expected!r}")
        if "answer" not in row:
            checked.fail(f"{where}['answer']", "missing")
        confidence = row.get("confidence")
        if confidence is not None and not 0.0 <= checked.of(confidence, "a number", f"{where}['confidence']") <= 1.0:
            checked.fail(f"{where}['confidence']", f"{confidence!r} is outside [0, 1]")
        confidences.append(confidence)
    expected = {**score([grades[i * samples:(i + 1) * samples] for i in range(problems)], ks),
                "calibration": confidence_scores(confidences, grades)}
    for key in ("pass@1", "pass@k", "correct_per_problem", "calibration"):
        if key not in result:
            checked.fail(f"['result'][{key!r}]", "missing")
        if result[key] != expected[key]:
            checked.fail(f"['result'][{key!r}]", f"{_shown(result[key])} where the samples' grades give "
                         f"{_shown(expected[key])}")
    return record


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
