"""The lab's judgments by hand: the premise, the claims and what GRPO changed, each with its margin."""

import pytest


def test_premise_and_claims_by_hand():
    from rejuv.lab.judging import claims, premise

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
    from rejuv.lab.judging import rl_updates

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


