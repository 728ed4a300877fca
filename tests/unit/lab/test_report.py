"""The lab report's judgements and tables on hand-made per-seed numbers."""

import pytest


def test_premise_and_claims_by_hand():
    from rejuv.lab.report import claims, premise

    def arm(before, after, entropy, ood_after=None):
        return {"before": {"overall": before, "id": before, "ood": before},
                "after": {"overall": after, "id": after, "ood": after if ood_after is None else ood_after},
                "entropy": entropy}

    per_seed = {str(s): {"modsft": arm(0.30, 0.60 + d, 0.10), "oversft": arm(0.50, 0.50, 0.01),
                         "oversft_fusion": arm(0.45, 0.55 + d, 0.03), "oversft_rejuv": arm(0.20, 0.55, 0.05, 0.7)}
                for s, d in enumerate((0.0, 0.01, -0.01))}
    found = {c["claim"].split(" (")[0]: c for c in premise(per_seed, tuple(per_seed["0"]))}
    assert found["ModSFT is competent"]["verdict"] == "held"  # 0.30 / 0.50 = 0.6 ≥ 0.5 on every seed
    assert found["OverSFT collapsed"]["verdict"] == "held"  # 0.01 / 0.10 = 0.1 ≤ 0.2
    assert found["Over-training costs RL: ModSFT + RL > OverSFT + RL"]["verdict"] == "held"  # +10 points
    assert "(met on 3 of 3 seeds); ModSFT / OverSFT 60.0 ± 0.0% (" in found["ModSFT is competent"]["text"]
    assert "(ahead on 3 of 3 seeds)" in found["Over-training costs RL: ModSFT + RL > OverSFT + RL"]["text"]
    found = {c["claim"].split(" (")[0]: c for c in claims(per_seed, tuple(per_seed["0"]))}
    assert found["Fusion + RL > OverSFT + RL"]["verdict"] == "held"
    assert found["Rejuvenation + RL > fusion + RL"]["verdict"] == "not shown"  # 0, ±1: a tie
    assert found["Rejuvenation + RL > ModSFT + RL"]["verdict"] == "reversed"  # −5 points
    assert found["OOD: Rejuvenation + RL > OverSFT + RL"]["verdict"] == "held"  # +20 points OOD
    restored = found["Rejuvenation restores entropy"]
    assert restored["verdict"] == "held" and restored["accuracy_kept"]["mean"] == pytest.approx(0.4)
    assert "Accuracy kept before RL: 40 ± 0% of OverSFT's" in restored["text"]


def test_rl_update_claims_by_hand():
    from rejuv.lab.report import rl_updates

    def arm(rel, bf16, rank, kept):
        return {"update": {"rel": rel, "changed_exact": 1.0, "changed_bf16": bf16, "energy_rank_share": rank,
                           "spikes_kept": kept}}

    per_seed = {str(s): {"modsft": arm(0.02 * (1 + d), 0.10, 0.8, 0.5), "oversft": arm(0.01, 0.02 + d, 0.3, 0.95)}
                for s, d in enumerate((0.0, 0.05, -0.05))}
    found = rl_updates(per_seed, ("modsft", "oversft"), stated=True)
    verdicts = {c["claim"].split(" (")[0]: c["verdict"] for c in found["claims"]}
    assert verdicts["RL moves OverSFT less than ModSFT"] == "held"  # log 2 ± 0.05 against a margin ≥ log 1.1
    assert verdicts["RL leaves OverSFT's spikes"] == "held"  # 95% kept on every seed
    assert verdicts["RL updates 5-30% of ModSFT's parameters in a bf16 copy"] == "held"
    assert verdicts["RL updates 5-30% of OverSFT's parameters in a bf16 copy"] == "did not hold"  # 2-7%
    assert verdicts["RL updates of ModSFT are nearly full rank"] == "held"
    assert verdicts["RL updates of OverSFT are nearly full rank"] == "did not hold"
    assert found["lines"][1].startswith("OverSFT: ‖Δ‖/‖θ_start‖ 0.0100 ± 0.0000;")
    assert rl_updates(per_seed, ("modsft", "oversft"), stated=False)["claims"] == []
    per_seed["1"]["oversft"]["update"] = None  # a run made before updates were measured: no figures at all
    assert rl_updates(per_seed, ("modsft", "oversft"), stated=True) == {"lines": [], "claims": []}


def test_calibration_claims_and_table_by_hand():
    from rejuv.lab.report import calibration_lines, claims

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
    from rejuv.lab.report import claim_rows, dead_group_rows, dead_groups, per_seed_table

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
