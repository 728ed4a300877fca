"""The field's hand-off rules on a hand-made table of signals (handoff/field_rules.py)."""

from rejuv.planner.field_rules import rule_pick, rule_scores

SIGNALS = {  # epoch → what plan records for it (coverage: pass@16; its ratio to the base's 0.80)
    "epoch-1": {"pass@1": 0.10, "entropy": 0.60, "nll": 0.90, "dead_groups": 0.70, "pass@group": 0.55,
                "coverage": 0.85, "coverage_ratio": 0.85 / 0.80, "diversity": 0.70},
    "epoch-2": {"pass@1": 0.40, "entropy": 0.30, "nll": 0.40, "dead_groups": 0.35, "pass@group": 0.80,
                "coverage": 0.90, "coverage_ratio": 0.90 / 0.80, "diversity": 0.72},
    "epoch-8": {"pass@1": 0.55, "entropy": 0.19, "nll": 0.35, "dead_groups": 0.40, "pass@group": 0.75,
                "coverage": 0.82, "coverage_ratio": 0.82 / 0.80, "diversity": 0.40},
    "epoch-32": {"pass@1": 0.60, "entropy": 0.05, "nll": 0.70, "dead_groups": 0.60, "pass@group": 0.70,
                 "coverage": 0.75, "coverage_ratio": 0.75 / 0.80, "diversity": 0.10},
}


def picks(signals):
    return {rule: rule_pick(scores) for rule, scores in rule_scores(signals).items()}


def test_each_rule_picks_what_it_says():
    assert picks(SIGNALS) == {
        "sft_accuracy": "epoch-32",  # the best pass@1
        "lowest_nll": "epoch-8",  # 0.35
        "entropy_screen": "epoch-8",  # the best pass@1 among entropy ≥ 0.18 (epoch-32 fails the screen)
        "pass_at_group": "epoch-2",  # pass@8 0.80
        "fewest_dead_groups": "epoch-2",  # 35% dead
        "peak_diversity": "epoch-2",  # 1 − self-BLEU 0.72
        "coverage_gate": "epoch-8",  # the best pass@1 among pass@16 ≥ the base's (epoch-32 lost coverage)
    }


def test_the_screen_falls_back_to_pass1_when_nothing_passes_and_ties_go_to_the_earliest():
    collapsed = {name: {**s, "entropy": 0.01} for name, s in SIGNALS.items()}
    assert picks(collapsed)["entropy_screen"] == "epoch-32"
    tied = {"a": {"dead_groups": 0.0}, "b": {"dead_groups": 0.0}, "c": {"dead_groups": None}}
    assert rule_pick(rule_scores(tied)["fewest_dead_groups"]) == "a"
    assert rule_pick(rule_scores({"a": {}})["lowest_nll"]) is None


def test_the_coverage_gate_falls_back_to_pass1_and_passes_everything_when_the_base_reached_nothing():
    lost = {name: {**s, "coverage_ratio": 0.5} for name, s in SIGNALS.items()}
    assert picks(lost)["coverage_gate"] == "epoch-32"
    unreached = {name: {**s, "coverage_ratio": None} for name, s in SIGNALS.items()}  # base pass@16 was 0
    assert picks(unreached)["coverage_gate"] == "epoch-32"
    unmeasured = {name: {k: v for k, v in s.items() if not k.startswith("coverage")} for name, s in SIGNALS.items()}
    assert picks(unmeasured)["coverage_gate"] is None  # plan --coverage-k 0, or a record made before issue 41
