"""Eval results in lm-evaluation-harness's layout."""

import pytest


def test_results_in_lm_evaluation_harness_layout():
    import math
    import statistics

    from rejuv.evaluation.lm_eval_format import lm_eval_files

    report = {"version": "0", "engine": "transformers",
              "config": {"temperature": 0.6, "top_p": 1.0, "max_new_tokens": 8, "batch_size": 2, "device": None,
                         "seed": 0},
              "results": [{"checkpoint": "/runs/m", "benchmark": "gsm", "problems": 3, "samples_per_problem": 4,
                           "pass@1": 5 / 12, "pass@k": {"1": 5 / 12, "4": 2 / 3}, "correct_per_problem": [1, 4, 0]}]}
    samples = [{"checkpoint": "/runs/m", "benchmark": "gsm", "problem": i, "sample": j, "answer": str(i),
                "completion": f"c{i}{j}", "correct": j < c} for i, c in enumerate([1, 4, 0]) for j in range(4)]
    files = lm_eval_files(report, samples, {"gsm": "/data/gsm.jsonl"})
    results = files["lm_eval/runs__m/results_rejuv.json"]
    cell = results["results"]["gsm"]
    assert cell["pass@1,none"] == 5 / 12 and cell["pass@4,none"] == 2 / 3 and cell["pass@4_stderr,none"] == "N/A"
    assert cell["pass@1_stderr,none"] == pytest.approx(statistics.stdev([0.25, 1.0, 0.0]) / math.sqrt(3))
    assert results["higher_is_better"]["gsm"] == {"pass@1": True, "pass@4": True}
    assert results["configs"]["gsm"]["repeats"] == 4 and results["model_name_sanitized"] == "runs__m"
    docs = files["lm_eval/runs__m/samples_gsm_rejuv.jsonl"]
    assert [d["pass@1"] for d in docs] == [0.25, 1.0, 0.0] and docs[1]["resps"] == [["c10", "c11", "c12", "c13"]]


