"""Report pages: values from checkpoints (names, paths, tokens, messages) reach the HTML escaped."""

from rejuv.diagnostics.report import render_html as diagnose_html
from rejuv.planner.report import render_html as plan_html
from rejuv.report.html import number, readable

EVIL = "<script>alert('x')</script>"


def _outputs(**extra):
    return {"mean_entropy": 0.5, "entropy_gap_to_base": -0.1, "top1_mass": 0.9, "nll": 0.2, "positions": 10,
            **extra}


def test_diagnose_page_escapes_names_paths_and_tokens():
    entry = {"rank": 1, "name": EVIL, "flagged": True, "signals": {"entropy": f"low {EVIL}"}, "sampling": None,
             "params": {"model": {"rel": 0.01, "kurtosis": None, "top_0.1pct_share": 0.2}},
             "outputs": _outputs(tokens_lost_entropy=[{"token": "Ġ<b>", "text": " <b>", "count": 3,
                                                       "total_entropy_drop": 1.5, "mean_entropy_drop": 0.5}])}
    changed = {"numel": 10, "changed_exact": 0.5, "changed_bf16": 0.4, "changed_above_tolerance": 0.3, "l2": 1.0,
               "rel": 0.1}
    update = {"start": f"/s/{EVIL}", "names": [EVIL, "b"], "stored_dtypes": {"start": {"BF16": 3}}, "tolerance": 1e-5,
              "energy": 0.9, "sketch": 256, "top_share": 0.001, "spike_fraction": 0.1,
              "checkpoints": [{"model": changed, "rank": {}, "spikes": None}] * 2,
              "overlap": [{"a": 0, "b": 1, "jaccard": 0.5, "random_jaccard": 0.25}]}
    report = {"base": {"path": f"/m/{EVIL}", "outputs": _outputs()}, "sampling": None, "seed": 0,
              "calibration": {"path": "c.jsonl", "samples": 4}, "checkpoints": [entry], "update": update}
    page = diagnose_html(report, {"drift": b"\x89PNG"})
    assert "What each update changed" in page and "3 BF16" in page
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert "<code>␣&lt;b&gt;</code>" in page and "<code>Ġ&lt;b&gt;</code>" in page  # as read, then as stored
    assert 'class="flagged"' in page and "data:image/png;base64,iVBORw==" in page and "Sampling: not run" in page
    assert "<td>–</td>" in page  # kurtosis unknown


def test_plan_page_escapes_the_command_and_warnings():
    probe = {"reward_start": 0.1, "reward_end": 0.3, "reward_end_se": None, "reward_slope": 0.01,
             "grad_to_update": 2.0, "entropy_slope": -0.001}
    signals = {k: 0.5 for k in ("entropy", "top1_mass", "nll", "drift", "pass@1", "pass_gap")}
    plan = {"seed": 1, "warnings": [EVIL], "correlations_with_probe": {"entropy": None},
            "recommendation": {"kind": "fused", "name": "a0.5", "from": EVIL, "alpha": 0.5, "rho": 0.0,
                               "command": f"rejuv apply --sft '{EVIL}'", "probe_reward_end": 0.3,
                               "probe_reward_end_se": None, "uncertainty": {"text": "separated"},
                               "diagnose": {"text": "no flag"}},
            "probe": {"steps": 8, "prompts_per_step": 4, "num_generations": 8, "learning_rate": 1e-6,
                      "rewards": ["math_verify"], "outcome": "mean"},
            "evaluation": {"problems": None, "samples": 4},
            "checkpoints": [{"name": "e2", "flagged": True, "signals": signals, "probe": probe}],
            "search": {"on": "e2", "candidates": [{"label": "a0.5", "alpha": 0.5, "rho": 0.0, "entropy": 0.4,
                                                   "entropy_recovered": 0.3, "pass@1": 0.2, "accuracy_kept": 0.9,
                                                   "score": 0.5, "probe": None}]}}
    page = plan_html(plan, {})
    assert "<script>alert" not in page and page.count("&lt;script&gt;") == 3
    assert "after fusion with α = 0.5" in page and "learning rate 1e-06" in page and "<td>e2 (flagged)</td>" in page


def test_cells_read_as_numbers_and_tokens_show_their_edges():
    assert (number(None), number(0.123456), number(0.123456, 3), number(7), number("x")) == \
        ("–", "0.1235", "0.123", "7", "x")
    assert readable(" the") == "␣the" and readable("a\n") == "a⏎" and readable("the") == "the"
