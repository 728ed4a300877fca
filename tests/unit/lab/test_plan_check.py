"""The planner check's summary by hand: the rule chosen on development seeds and judged on the others, beside
the field's rules."""

import pytest

from rejuv.lab.plan_check import PROBE_FREE, summarize_planner
from rejuv.planner.field_rules import FIELD_RULES


def test_planner_summary_chooses_the_rule_on_development_seeds_by_hand():
    def seed(end, slope, by_accuracy, dead=0.05):
        field = {rule: {"pick": "epoch-2", "shortfall": by_accuracy, "spearman": 0.4} for rule in FIELD_RULES}
        field["fewest_dead_groups"] = {"pick": "epoch-4", "shortfall": dead, "spearman": -0.2}
        return {"post_rl": {"epoch-1": 0.5 - end, "alpha0.5": 0.5 - dead / 5, "best": 0.5}, "best_start": "best",
                "cheap_search": {"pick": "alpha0.7-rho0", "shortfall": None},
                "shortfall": {"end_reward": end, "slope_extrapolation": slope}, "shortfall_by_sft_accuracy":
                by_accuracy, "searched_minus_rule": 0.01, "searched_minus_half": 0.2, "spearman_probe": 0.5,
                "spearman_sft_accuracy": 0.4, "recommended": {"end_reward": "epoch-1", "slope_extrapolation":
                                                              "epoch-8"}, "field": field}

    summary = summarize_planner({0: seed(0.10, 0.0, 0.1), 1: seed(0.10, 0.02, 0.1), 2: seed(0.0, 0.3, 0.2),
                                 3: {"skipped": "no signal"}, 4: None}, dev_seeds=[0, 1])
    assert summary["rule"] == "slope_extrapolation"  # 0.01 mean shortfall on the development seeds against 0.10
    assert summary["development"]["seeds"] == [0, 1] and summary["test"]["seeds"] == [2]
    assert summary["test"]["shortfall"]["mean"] == pytest.approx(0.3)  # judged where it was not chosen
    assert summary["skipped"] == {3: "no signal"}
    assert summarize_planner({0: None}, [0]) is None
    fixed = summarize_planner({3: seed(0.10, 0.0, 0.1), 4: seed(0.0, 0.3, 0.2)}, dev_seeds=[3], fixed_rule="end_reward")
    assert fixed["rule"] == "end_reward" and fixed["development"] is None and fixed["test"]["seeds"] == [3, 4]
    assert fixed["test"]["shortfall"]["mean"] == pytest.approx(0.05) and "fixed in advance" in fixed["texts"][0]
    table = {row["rule"]: row for row in fixed["test"]["rules"]}  # every rule side by side, on the same seeds
    assert list(table) == ["rejuv plan (end_reward)", *FIELD_RULES, *PROBE_FREE]
    assert table["rejuv plan (end_reward)"]["picks"] == {3: "epoch-1", 4: "epoch-1"}
    assert table["fewest_dead_groups"]["shortfall"]["mean"] == pytest.approx(0.05)
    assert table["sft_accuracy"]["shortfall"]["mean"] == pytest.approx(0.15) and table["lowest_nll"]["best_picked"] == 0
    # 0.05 is no less than 0.05: only the probe-free fusion (0.01) came closer
    assert [t for t in fixed["texts"] if "came closer to the best start than the planner" in t] == [
        "Test seeds: the rule(s) fused_last_half came closer to the best start than the planner's recommendation on "
        "average: a "
        "finding, not a verdict over so few seeds."]

    # the probe-free rules, and every rule paired with the planner seed by seed
    assert table["fused_last_half"]["shortfall"]["mean"] == pytest.approx(0.01)
    assert table["fused_last_half"]["versus_planner"]["value"]["mean"] == pytest.approx(0.01 - 0.05)
    assert table["cheap_search"]["versus_planner"] is None and table["cheap_search"]["shortfall"]["mean"] is None
    assert table["cheap_search"]["seeds_known"] == 0 and table["fused_last_half"]["seeds_known"] == 2

    from rejuv.lab.report import planner_rows

    shown = {row[0]: row[3] for row in planner_rows(fixed["test"])}  # best start picked, of the seeds known
    assert (shown["cheap_search"], shown["fused_last_half"], shown["lowest_nll"]) == ("–", "0 of 2", "0 of 2")
    one_known = {**table["fused_last_half"], "seeds_known": 1, "best_picked": 1}
    assert planner_rows({"rules": [one_known]})[0][3] == "1 of 1 known (2 seeds)"
    assert table["sft_accuracy"]["versus_planner"]["value"]["mean"] == pytest.approx(0.15 - 0.05)
    assert summary["all_seeds"]["seeds"] == [0, 1, 2] and any(t.startswith("All 3 seeds") for t in summary["texts"])

    # every seed: each rule's paired difference from the planner as a table (the planner: 0, 2 and 30 points short)
    from rejuv.lab.report import versus_planner_rows

    versus = {row[0]: row[1:] for row in versus_planner_rows(summary["all_seeds"])}
    assert list(versus) == [*FIELD_RULES, *PROBE_FREE]
    assert versus["fewest_dead_groups"][0] == "3 of 3" and versus["fewest_dead_groups"][6] == "2 / 1"  # +3, +1, −25
    assert versus["fused_last_half"][3] == "-9.7 ± 16.8" and versus["fused_last_half"][6] == "1 / 2"  # +1, −1, −29
    assert versus["cheap_search"][0] == "0 of 3" and versus["cheap_search"][3:] == ["–"] * 4
    assert versus_planner_rows(None) == []


def test_the_cheap_pick_is_known_where_full_rl_ran_from_the_same_weights(tmp_path):
    """The cheap signals' pick takes the post-RL result of a start whose safetensors are byte-identical (the
    search's α 0.5 without a reset is the lab's fusion at α 0.5), never of a start that only shares its name."""
    from rejuv.lab.plan_check import cheap_search, same_weights

    def checkpoint(folder, data: bytes):
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(data)
        return folder

    candidates = tmp_path / "plan" / "candidates"
    checkpoint(candidates / "alpha0.5-rho0", b"fused at one half")
    probed = checkpoint(candidates / "alpha0.7-rho0.01", b"probed")
    fusion = checkpoint(tmp_path / "rules" / "alpha0.5", b"fused at one half")
    rule = checkpoint(tmp_path / "rules" / "alpha0.5-rho0.001", b"the rule's reset")
    plan = {"search": {"candidates": [{"label": "alpha0.5-rho0", "score": 0.4},
                                      {"label": "alpha0.7-rho0.01", "score": 0.3}]}}
    after = {"searched-alpha0.7-rho0.01": 0.30, "alpha0.5": 0.42, "rule-alpha0.5-rho0.001": 0.45}
    starts = {"searched-alpha0.7-rho0.01": probed, "alpha0.5": fusion, "rule-alpha0.5-rho0.001": rule}
    found = cheap_search(tmp_path, plan, after, "rule-alpha0.5-rho0.001", starts)
    assert found == {"pick": "alpha0.5-rho0", "shortfall": pytest.approx(0.03), "same_weights_as": "alpha0.5"}
    (fusion / "model.safetensors").write_bytes(b"fused at one half, other kernels")
    assert cheap_search(tmp_path, plan, after, "rule-alpha0.5-rho0.001", starts)["shortfall"] is None
    plan["search"]["candidates"][1]["score"] = 0.5  # the probed candidate: known by its own run
    assert cheap_search(tmp_path, plan, after, "rule-alpha0.5-rho0.001", starts)["shortfall"] == pytest.approx(0.15)
    assert not same_weights(tmp_path / "missing", fusion) and not same_weights(tmp_path / "plan", tmp_path / "rules")
    assert cheap_search(tmp_path, {"search": {"candidates": []}}, after, "alpha0.5", starts)["pick"] is None


def test_post_rl_results_read_after_the_lab_folder_moved(tmp_path):
    """The evaluation keyed its results by the runs' paths when it ran; a folder moved since (runs.json
    rewritten by a resumed run) still reads, and a run with no result is refused by file and start."""
    from rejuv.errors import RejuvError
    from rejuv.lab.plan_check import post_rl_results

    root = tmp_path / "moved" / "seed-6"
    report = {"average_pass@1": {"/old/place/seed-6/rl/oversft": 0.4, "/old/place/seed-6/plan_truth/rl/epoch-1": 0.1}}
    runs = {"epoch-32": str(root / "rl" / "oversft"), "epoch-1": str(root / "plan_truth" / "rl" / "epoch-1")}
    assert post_rl_results(root, report, runs) == {"epoch-32": 0.4, "epoch-1": 0.1}
    with pytest.raises(RejuvError, match=r"seed-6/plan_truth/eval/eval.json: no result for the full RL run of "
                                         r"alpha0.5 \(listed in plan_truth/runs.json\)"):
        post_rl_results(root, report, {**runs, "alpha0.5": str(root / "rl" / "oversft_fusion")})
