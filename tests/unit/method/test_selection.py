import pytest
import torch

from rejuv.errors import RejuvError
from rejuv.method.arch import Neurons
from rejuv.method.reset import reset_entries, summarize
from rejuv.method.selection import ResetSet, budget

A = Neurons(0, "q_proj", "m.layers.0.self_attn.q_proj", 0)
B = Neurons(0, "down_proj", "m.layers.0.mlp.down_proj", 1)


def test_budget_rounds_up_and_zero_means_none():
    assert budget(0.0, 100) == 0
    assert budget(0.01, 100) == 1
    assert budget(0.011, 100) == 2
    assert budget(0.001, 100) == 1
    assert budget(0.5, 3) == 2


def test_global_ranking_keeps_top_positive_scores_and_unions_targets():
    rs = ResetSet([A, B], {A: 4, B: 6}, rho=0.2)  # 10 neurons -> 2 per target
    rs.add({A: torch.tensor([[5.0, 0.1, 0.2, 0.3], [0.0, 0.0, -1.0, 0.0]]),
            B: torch.tensor([[0.0, 0.0, 4.0, 0.0, 0.0, 0.0], [-3.0, -2.0, -5.0, -1.0, 0.5, -4.0]])})
    # Target 0: A[0] and B[2]. Target 1: B[4] only (the second-best, A's 0.0, is not positive).
    assert rs.indices() == {A: [0], B: [2, 4]}
    assert rs.selected == 3 and rs.total == 10 and rs.targets == 2
    size = summarize(reset_entries(rs.indices(), {A.weight, B.weight}), {A: 4, B: 6})
    assert size["by_module"]["0.down_proj"] == {"reset": 2, "total": 6} and size["neurons_reset"] == 3
    assert size["by_kind"]["down_proj"] == {"reset": 2, "total": 6, "ratio": 2 / 6}
    assert size["effective_reset_ratio"] == 0.3


def test_one_pass_gives_every_rho_of_the_grid_as_a_prefix_of_one_ranking():
    scores = {A: torch.tensor([[5.0, 0.1, 0.2, 0.3]]), B: torch.tensor([[0.0, 0.0, 4.0, 0.0, 3.0, 0.05]])}
    rs = ResetSet([A, B], {A: 4, B: 6}, rho=0.3, other_rhos=[0.1, 0.2])  # 1, 2 and 3 neurons per target
    rs.add(scores)
    assert rs.rhos == [0.1, 0.2, 0.3]
    assert rs.indices(0.1) == {A: [0]} and rs.indices(0.2) == {A: [0], B: [2]}
    assert rs.indices() == rs.indices(0.3) == {A: [0], B: [2, 4]}
    for rho in (0.1, 0.2):  # each equals a set built for that ρ alone
        alone = ResetSet([A, B], {A: 4, B: 6}, rho=rho)
        alone.add(scores)
        assert alone.indices() == rs.indices(rho)


def test_per_module_ranking_touches_every_module():
    rs = ResetSet([A, B], {A: 4, B: 6}, rho=0.2, ranking="per-module")  # 1 of A, 2 of B
    rs.add({A: torch.tensor([[0.1, 0.3, 0.2, 0.0]]), B: torch.tensor([[9.0, 8.0, 7.0, 0.0, 0.0, 0.0]])})
    assert rs.indices() == {A: [1], B: [0, 1]}


def test_bad_rho_and_ranking_are_refused_where_they_are_declared():
    """The checks live once, in apply's config (the component takes them as checked)."""
    from rejuv.recipes.apply import ApplyConfig

    with pytest.raises(RejuvError, match=r"rho: must lie in \[0, 1\) or be 'auto', got 1.5"):
        ApplyConfig(base="b", sft="s", out="o", calib="c", rho=1.5)
    with pytest.raises(RejuvError, match="ranking: 'random' is not one of global, per-module"):
        ApplyConfig(base="b", sft="s", out="o", calib="c", ranking="random")
