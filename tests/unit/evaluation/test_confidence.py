"""Stated confidence: parsing, the Brier reward, ECE/Brier in `rejuv eval`, all against hand computations."""

import json

import pytest

from rejuv.evaluation.confidence import brier_reward_values, confidence_scores, stated_confidence
from rejuv.recipes.eval import EvalConfig, run_eval, summary_table
from rejuv.train.rewards import resolve_reward

from tiny import build_model, save


def test_stated_confidence_is_the_last_statement_as_a_probability():
    assert stated_confidence("so \\boxed{7}. Confidence: 0.8") == 0.8
    assert stated_confidence("confidence=75%") == 0.75
    assert stated_confidence("CONFIDENCE: .5 ... confidence: 0.9") == 0.9
    assert stated_confidence("no statement") is None
    assert stated_confidence("confidence: 1.7") is None and stated_confidence("confidence: 150%") is None


def test_brier_reward_by_hand():
    assert brier_reward_values([0.8, 0.8, None, 0.0], [True, False, True, False]) == pytest.approx(
        [-0.04, -0.64, -1.0, 0.0])
    reward = resolve_reward("brier")
    values = reward(["\\boxed{7} confidence: 0.9", "\\boxed{5} confidence: 0.9", "\\boxed{7}"], answer=["7"] * 3)
    assert values == pytest.approx([-0.01, -0.81, -1.0])


def test_calibration_ece_and_brier_by_hand():
    # Bins of width 0.1: 0.95 and 0.9 share bin 9 (accuracy 1/2, mean confidence 0.925); 0.3 is bin 3 (accuracy 0).
    cal = confidence_scores([0.95, 0.9, 0.3, None], [True, False, False, True])
    assert cal["samples"] == 4 and cal["stated"] == 0.75
    assert cal["brier"] == pytest.approx((0.05 ** 2 + 0.9 ** 2 + 0.3 ** 2) / 3)
    assert cal["ece"] == pytest.approx(2 / 3 * abs(0.5 - 0.925) + 1 / 3 * 0.3)
    assert cal["mean_confidence"] == pytest.approx((0.95 + 0.9 + 0.3) / 3)
    assert cal["accuracy_when_stated"] == pytest.approx(1 / 3)
    assert confidence_scores([1.0], [True])["ece"] == 0.0  # a confidence of exactly 1 falls in the last bin
    assert confidence_scores([None, None], [True, False])["brier"] is None


def test_eval_reports_calibration_from_stated_confidences(tmp_path, monkeypatch):
    model, tok = build_model("llama", seed=0)
    save(model, tok, tmp_path / "m")
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({"problem": f"q{i}", "answer": str(i)}) + "\n"
                                              for i in range(2)))
    from rejuv.evaluation.engines import TransformersEngine

    def scripted(self, prompts, progress=None):  # problem 0 right and sure; problem 1 wrong and sure
        return [["\\boxed{0} confidence: 0.9", "\\boxed{0} confidence: 80%"],
                ["\\boxed{5} confidence: 0.9", "\\boxed{5}"]]

    monkeypatch.setattr(TransformersEngine, "generate", scripted)
    report = run_eval(EvalConfig(checkpoints=[str(tmp_path / "m")], data=[str(tmp_path / "b.jsonl")],
                                 out=str(tmp_path / "o"), samples=2, engine="transformers", progress=False))
    cal = report["results"][0]["calibration"]
    assert cal["stated"] == 0.75
    assert cal["brier"] == pytest.approx((0.01 + 0.04 + 0.81) / 3)
    samples = [json.loads(x) for x in (tmp_path / "o" / "samples.jsonl").read_text().splitlines()]
    assert [s["confidence"] for s in samples] == [0.9, 0.8, 0.9, None]
    table = summary_table(None, report)
    assert "Brier" in table and "ECE" in table and "75" in table
