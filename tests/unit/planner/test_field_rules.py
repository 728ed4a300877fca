"""The field's hand-off rules on a hand-made table of signals (handoff/field_rules.py)."""

from rejuv.planner.field_rules import rule_pick, rule_scores

SIGNALS = {  # epoch → what plan records for it
    "epoch-1": {"pass@1": 0.10, "entropy": 0.60, "nll": 0.90, "dead_groups": 0.70, "pass@group": 0.55},
    "epoch-2": {"pass@1": 0.40, "entropy": 0.30, "nll": 0.40, "dead_groups": 0.35, "pass@group": 0.80},
    "epoch-8": {"pass@1": 0.55, "entropy": 0.19, "nll": 0.35, "dead_groups": 0.40, "pass@group": 0.75},
    "epoch-32": {"pass@1": 0.60, "entropy": 0.05, "nll": 0.70, "dead_groups": 0.60, "pass@group": 0.70},
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
    }


def test_the_screen_falls_back_to_pass1_when_nothing_passes_and_ties_go_to_the_earliest():
    collapsed = {name: {**s, "entropy": 0.01} for name, s in SIGNALS.items()}
    assert picks(collapsed)["entropy_screen"] == "epoch-32"
    tied = {"a": {"dead_groups": 0.0}, "b": {"dead_groups": 0.0}, "c": {"dead_groups": None}}
    assert rule_pick(rule_scores(tied)["fewest_dead_groups"]) == "a"
    assert rule_pick(rule_scores({"a": {}})["lowest_nll"]) is None
