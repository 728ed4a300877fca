"""The lab report's judgements and tables on hand-made per-seed numbers."""

import pytest


def test_calibration_claims_and_table_by_hand():
    from rejuv.lab.judging import claims
    from rejuv.lab.report import calibration_lines

    def row(brier, ece, overall):
        cal = {"stated": 1.0, "brier": brier, "ece": ece}
        return {"after": {"overall": overall}, "calibration": {"before": cal, "after": cal}, "reward_change": 0.1}

    per_seed = {"0": {"conf": row(0.30, 0.20, 0.5), "conf_brier": row(0.20, 0.10, 0.5)},
                "1": {"conf": row(0.25, 0.15, 0.6), "conf_brier": row(0.27, 0.05, 0.55)}}
    found = {c["claim"]: c for c in claims(per_seed, ("conf", "conf_brier"))}
    assert found["The Brier reward lowers the Brier score after RL"]["verdict"] == "not shown"  # +0.10, −0.02
    ece = found["The Brier reward lowers ECE after RL"]
    assert ece["verdict"] == "held" and ece["value"]["mean"] == pytest.approx(0.1)  # 0.1 on both seeds
    lines = calibration_lines(per_seed, ("conf", "conf_brier"))
    assert lines[-1].startswith("| Conf. SFT → RL + Brier | 100.0 ± 0.0 | 0.235 ± 0.049 |")
    assert calibration_lines({"0": {"conf": {"calibration": {"before": None, "after": None}}}}, ("conf",)) == []


def test_the_report_sets_the_forecast_beside_what_grpo_measured_and_lists_paired_differences():
    from rejuv.lab.judging import claim_rows, dead_groups
    from rejuv.lab.report import dead_group_rows, per_seed_table

    def arm(forecast, measured, before, after):
        return {"forecast": {"dead_share": forecast, "prompts": 64, "group_size": 8, "samples_per_prompt": 8},
                "dead_measured": measured, "before": {"overall": before}, "after": {"overall": after}}

    per_seed = {"0": {"modsft": arm(0.9, 1.0, 0.3, 0.2), "oversft": arm(0.2, 0.25, 0.5, 0.4)},
                "1": {"modsft": arm(0.3, 0.5, 0.3, 0.5), "oversft": arm(0.4, 0.25, 0.5, 0.45)}}
    found = dead_groups(per_seed, ("modsft", "oversft"))
    assert found["pairs"] == 4 and found["error"] == pytest.approx((0.1 + 0.05 + 0.2 - 0.15) / 4)
    assert found["abs_error"] == pytest.approx((0.1 + 0.05 + 0.2 + 0.15) / 4)
    assert found["spearman"] == pytest.approx(3 / 22.5 ** 0.5)  # ranks 4,2,1,3 against 4,3,1.5,1.5
    assert dead_group_rows(found)[0] == ["ModSFT", "60 ± 42%", "75 ± 35%", "0: 90 / 100; 1: 30 / 50"]
    claim = {"claim": "A > B", "verdict": "not shown", "value": {"mean": 0.05, "sd": 0.1, "n": 12}, "margin": 0.052,
             "interval": [-0.0135, 0.1135], "detectable": 0.077, "seeds_ahead": 7, "seeds": 12,
             "measure": "overall pass@1 after RL, A − B", "differences": {"0": -0.1, "1": 0.05}}
    assert claim_rows([claim]) == [["A > B", "not shown", "+5.0 ± 10.0 points", "-1.4 to +11.3", "5.2", "7 of 12",
                                    "7.7"]]
    header, rows = per_seed_table(per_seed, ("modsft", "oversft"), [claim])
    assert header[-1] == "Δ overall pass@1 after RL, A − B" and rows[0] == ["0", "30.0 → 20.0", "50.0 → 40.0", "-10.0"]
