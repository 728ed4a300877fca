"""Results eval keeps while it runs (evaluation/kept.py), read back as untrusted input."""

from __future__ import annotations

import copy
import json

import pytest

from rejuv.evaluation.confidence import confidence_scores
from rejuv.evaluation.kept import check_kept_result, kept_result, partial_dir, write_atomic
from rejuv.evaluation.scores import score
from rejuv.io.records import DamagedRecord

GRADES = [[True, False], [False, False], [True, True]]  # 3 problems × 2 samples


def record() -> dict:
    samples = [{"checkpoint": "ck", "benchmark": "gsm", "problem": i, "sample": j, "answer": "7",
                "completion": "\\boxed{7}", "correct": ok, "confidence": None}
               for i, row in enumerate(GRADES) for j, ok in enumerate(row)]
    flat = [ok for row in GRADES for ok in row]
    result = {"checkpoint": "ck", "benchmark": "gsm", **score(GRADES, [1, 2]),
              "calibration": confidence_scores([None] * len(flat), flat), "chat_template_used": False,
              "dtype": "float32"}
    return {"result": result, "samples": samples}


def check(found: dict, tmp_path) -> dict:
    return check_kept_result(found, tmp_path / "unit.json", "gsm", 3, 2, [1, 2])


def test_a_kept_result_as_eval_wrote_it_is_taken(tmp_path):
    assert check(record(), tmp_path) == record()


@pytest.mark.parametrize("damage, named", [
    (lambda r: r["result"].update({"pass@1": 0.9}), r"\['result'\]\['pass@1'\]: 0.9 where the samples' grades"),
    (lambda r: r["samples"][3].update({"correct": True}), r"\['result'\]\['pass@1'\]"),
    (lambda r: r["samples"][2].update({"problem": 0}), r"\['samples'\]\[2\]\['problem'\]"),
    (lambda r: r["samples"].pop(), r"\['samples'\]: 5 rows for 3 problems × 2 samples"),
    (lambda r: r["samples"][0].update({"confidence": 1.5}), r"\['samples'\]\[0\]\['confidence'\]: 1.5 is outside"),
    (lambda r: r["result"].update({"samples_per_problem": 4}), r"\['result'\]\['samples_per_problem'\]: 4 where"),
    (lambda r: r["samples"][1].pop("answer"), r"\['samples'\]\[1\]\['answer'\]: missing"),
    (lambda r: r.update({"result": []}), r"\['result'\]"),
])
def test_a_damaged_kept_result_is_refused_by_its_key(tmp_path, damage, named):
    found = copy.deepcopy(record())
    damage(found)
    with pytest.raises(DamagedRecord, match=named):
        check(found, tmp_path)


def test_a_damaged_unit_is_set_aside_and_evaluated_again(tmp_path, caplog):
    unit = tmp_path / "unit.json"
    assert kept_result(unit, "gsm", 3, 2, [1, 2]) is None  # nothing kept yet
    write_atomic(unit, json.dumps(record()) + "\n")
    assert kept_result(unit, "gsm", 3, 2, [1, 2]) == record()
    unit.write_text("{not json")
    assert kept_result(unit, "gsm", 3, 2, [1, 2]) is None
    assert "unit.json: not a readable kept evaluation result" in caplog.text
    assert "set aside as unit.json.damaged" in caplog.text
    assert not unit.exists() and (tmp_path / "unit.json.damaged").exists()


def test_kept_results_wait_beside_the_output(tmp_path):
    assert partial_dir(tmp_path / "runs" / "eval") == (tmp_path / "runs" / ".eval.rejuv-partial").resolve()
    write_atomic(tmp_path / "a.json", "{}\n")
    assert (tmp_path / "a.json").read_text() == "{}\n" and [p.name for p in tmp_path.iterdir()] == ["a.json"]
