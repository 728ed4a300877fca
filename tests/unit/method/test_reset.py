"""The reset: per-tensor entries, their application to a block, and the choice of ρ for `--rho auto` with its
warnings."""

import numpy as np
import pytest

from rejuv.errors import RejuvError
from rejuv.method.arch import Neurons
from rejuv.method.reset import apply_reset, reset_entries

A = Neurons(0, "q_proj", "m.layers.0.self_attn.q_proj", 0)
B = Neurons(0, "down_proj", "m.layers.0.mlp.down_proj", 1)


def test_reset_plan_includes_reader_biases_only():
    names = {A.weight, A.bias, B.weight, B.bias}
    plan = reset_entries({A: [1, 2], B: [3]}, names)
    assert plan == {A.weight: {"axis": 0, "indices": [1, 2]}, A.bias: {"axis": 0, "indices": [1, 2]},
                    B.weight: {"axis": 1, "indices": [3]}}
    with pytest.raises(RejuvError, match="not in the checkpoint"):
        reset_entries({A: [1]}, {B.weight})


def test_apply_reset_rows_and_columns():
    fused, base = np.zeros((3, 4), np.float32), np.arange(12.0).reshape(3, 4)  # float64 base, cast on write
    assert apply_reset(fused.copy(), base, 0, [2]).tolist() == [[0] * 4, [0] * 4, [8, 9, 10, 11]]
    cols = apply_reset(fused.copy(), base, 1, np.array([0, 3]))
    assert cols[:, 0].tolist() == [0, 4, 8] and cols[:, 3].tolist() == [3, 7, 11] and abs(cols[:, 1:3]).sum() == 0
    assert cols.dtype == np.float32


def test_rho_auto_allows_the_calibration_sets_noise():
    """On a real 135 M checkpoint fusion raised accuracy (0.9784 → 0.9818): the allowed cost became 0, and
    ρ 0.0003 was refused for one token of about 1,180. The tolerance (a standard error, at least one token)
    takes such a ρ; a cost well beyond it is still refused, and a union above the share too."""
    from rejuv.method.reset import AccuracyCost, auto_rho

    cost = AccuracyCost(sft=0.9784, fused=0.9818, tokens=1180)
    assert cost.fusion_cost == 0.0
    assert cost.tolerance == pytest.approx((0.9818 * 0.0182 / 1180) ** 0.5) and cost.tolerance > 1 / 1180
    grid = [{"rho": 0.0003, "effective_reset_ratio": 0.008, "calibration_accuracy": 0.9818 - 1 / 1180},  # one token
            {"rho": 0.001, "effective_reset_ratio": 0.02, "calibration_accuracy": 0.9818 - 4 / 1180},  # four
            {"rho": 0.003, "effective_reset_ratio": 0.04, "calibration_accuracy": 0.9818 - 12 / 1180},  # twelve
            {"rho": 0.01, "effective_reset_ratio": 0.09, "calibration_accuracy": 0.9818}]  # union too large
    rho, rule = auto_rho(grid, cost, 0.05)
    assert rho == 0.001 and "(0.0039 over 1180 tokens)" in rule
    assert auto_rho(grid[:1], AccuracyCost(0.9784, 0.9818, 100_000), 0.05)[0] == 0.0  # one token of 100k: noise
    # is 0.0004 there, and 0.00085 is more


def test_rho_auto_takes_the_largest_rho_the_rule_allows():
    from rejuv.method.reset import AccuracyCost, auto_rho

    cost = AccuracyCost(sft=0.9, fused=0.8, tokens=10_000)  # fusion cost 0.1, noise 0.004
    grid = [{"rho": 0.001, "effective_reset_ratio": 0.01, "calibration_accuracy": 0.79},
            {"rho": 0.003, "effective_reset_ratio": 0.03, "calibration_accuracy": 0.697},  # 0.103 ≤ 0.104
            {"rho": 0.01, "effective_reset_ratio": 0.06, "calibration_accuracy": 0.78},  # union too large
            {"rho": 0.03, "effective_reset_ratio": 0.02, "calibration_accuracy": 0.60}]  # costs too much
    rho, rule = auto_rho(grid, cost, 0.05)
    assert rho == 0.003 and "costs no more calibration accuracy than fusion did (0.1000)" in rule
    assert auto_rho(grid, cost, 0.005)[0] == 0.0


def test_reset_warnings_by_hand():
    from rejuv.method.reset import AccuracyCost, reset_warnings

    kinds = {"v_proj": {"ratio": 0.8}, "k_proj": {"ratio": 0.67}, "q_proj": {"ratio": 0.3}, "o_proj": {"ratio": 0.08}}
    union, accuracy = reset_warnings(0.217, 0.05, 0.01, 512, kinds, AccuracyCost(0.9, 0.85, 1000), 0.4)
    assert "covers 21.7% of the model's neurons" in union and "22x rho" in union
    assert "v_proj 80%, k_proj 67%, q_proj 30%" in union
    assert "SFT 0.900, fused 0.850, rejuvenated 0.400" in accuracy and "over 1000 tokens" in accuracy
    # Fusion cost 0.3, the reset 0.05: nothing to say; a union below the share: nothing either.
    assert reset_warnings(0.01, 0.05, 0.01, 512, kinds, AccuracyCost(0.9, 0.6, 1000), 0.55) == []
    assert reset_warnings(0.01, 0.05, 0.01, 512, kinds, None, None) == []
    # Fusion raised accuracy and the reset costs one token of 1,180: within the noise, no warning.
    assert reset_warnings(0.01, 0.05, 0.01, 512, kinds, AccuracyCost(0.9784, 0.9818, 1180), 0.9818 - 1 / 1180) == []


def test_a_random_control_draws_the_same_count_in_every_module_seeded():
    from rejuv.method.reset import random_like, summarize

    q = Neurons(1, "q_proj", "m.layers.1.self_attn.qkv_proj", 0, span=(0, 32))
    k = Neurons(1, "k_proj", "m.layers.1.self_attn.qkv_proj", 0, span=(32, 48))
    sizes = {A: 32, B: 64, q: 32, k: 16}
    names = {A.weight, A.bias, B.weight, q.weight}
    plan = reset_entries({A: [1, 2, 3], B: [5], k: [0, 7]}, names)
    drawn = random_like(plan, sizes, names, seed=0)
    assert summarize(drawn, sizes)["by_module"] == summarize(plan, sizes)["by_module"]  # same count per module
    assert drawn[A.weight] == drawn[A.bias] and all(32 <= i < 48 for i in drawn[q.weight]["indices"])  # k's span
    assert drawn == random_like(plan, sizes, names, seed=0) and drawn != random_like(plan, sizes, names, seed=1)
