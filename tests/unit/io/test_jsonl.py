"""JSON Lines and JSON: one reader that names the bad line, one writer, strict JSON (no NaN) in records."""

import json
import math

import pytest

from rejuv.errors import RejuvError
from rejuv.io.jsonl import numbered_jsonl, read_jsonl, strict, strict_dumps, write_json, write_jsonl


def test_rows_round_trip_and_blank_lines_are_skipped(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"x": 1}, {"y": [1, 2]}])
    with open(path, "a") as f:
        f.write("\n")
    assert read_jsonl(path) == [{"x": 1}, {"y": [1, 2]}]
    write_jsonl(path, [{"z": 3}], append=True)
    assert [n for n, _ in numbered_jsonl(path)] == [1, 2, 4]


def test_a_bad_line_and_a_file_that_is_not_utf8_are_named(tmp_path):
    (tmp_path / "b.jsonl").write_text('{"x": 1}\n{"x": \n')
    with pytest.raises(RejuvError, match=r"b.jsonl:2: not valid JSON"):
        read_jsonl(tmp_path / "b.jsonl")
    (tmp_path / "c.jsonl").write_bytes(b"\xff\xfe\n")
    with pytest.raises(RejuvError, match="c.jsonl: not UTF-8 text"):
        read_jsonl(tmp_path / "c.jsonl")
    assert read_jsonl(tmp_path / "missing.jsonl", missing_ok=True) == []
    with pytest.raises(RejuvError, match="missing.jsonl: data file not found"):
        read_jsonl(tmp_path / "missing.jsonl")


def test_records_hold_no_bare_nan(tmp_path):
    value = {"a": math.nan, "b": [math.inf, 1.0], "c": "x"}
    assert strict(value) == {"a": None, "b": [None, 1.0], "c": "x"}
    assert json.loads(strict_dumps(value)) == {"a": None, "b": [None, 1.0], "c": "x"}
    write_json(tmp_path / "r.json", value)
    assert "NaN" not in (tmp_path / "r.json").read_text()
