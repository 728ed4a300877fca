"""What an update changed (diagnostics/update.py), on hand-made checkpoints where every figure is known."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from rejuv.diagnostics.update import rank_of, update_statistics
from rejuv.io.reader import Checkpoint

W = "model.layers.0.mlp.down_proj.weight"
Q = "model.layers.1.self_attn.q_proj.weight"


def write(folder, tensors: dict[str, torch.Tensor]):
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "model.safetensors"))
    return folder


def stats(tmp_path, start: dict, results: list[dict], base: dict | None = None, **options) -> dict:
    paths = [write(tmp_path / f"r{i}", r) for i, r in enumerate(results)]
    ckpts = [Checkpoint(p) for p in paths]
    with Checkpoint(write(tmp_path / "start", start)) as s:
        b = Checkpoint(write(tmp_path / "base", base)) if base is not None else None
        try:
            return update_statistics(s, ckpts, sorted(start), base=b, **options)
        finally:
            for c in ckpts:
                c.close()
            if b is not None:
                b.close()


def test_the_share_of_changed_entries_is_counted_exactly_and_above_the_tolerance(tmp_path):
    start = torch.randn(100, 100, generator=torch.Generator().manual_seed(0)).clamp(-3, 3)
    new = start.clone().flatten()
    new[:1000] += 0.5  # 10% moved far
    new[1000:1500] += 1e-6  # 5% moved by less than the tolerance (at |θ| ≤ 3 a float32 step is ≤ 2.4e-7)
    new[1500:1600] = -new[1500:1600] * 0 + new[1500:1600]  # rewritten, same bits: no change
    result = stats(tmp_path, {W: start}, [{W: new.view(100, 100)}], tolerance=1e-5)
    model = result["checkpoints"][0]["model"]
    assert model["changed_exact"] == 0.15
    delta = new.view(100, 100).double() - start.double()
    assert model["l2"] == pytest.approx(float(delta.norm()), rel=1e-9)
    assert model["rel"] == pytest.approx(float(delta.norm() / start.double().norm()), rel=1e-9)
    assert model["changed_above_tolerance"] == pytest.approx(0.10)
    assert result["checkpoints"][0]["by_kind"]["down_proj"] == model
    assert result["checkpoints"][0]["by_layer"]["0"]["down_proj"] == model
    assert result["stored_dtypes"] == {"start": {"F32": 1}, "checkpoints": [{"F32": 1}]}


def test_bf16_storage_rounds_small_updates_away(tmp_path):
    (tmp_path / "f32").mkdir()
    start = (torch.rand(64, 64, generator=torch.Generator().manual_seed(1)) * 0.02 + 0.01).bfloat16()
    tiny = (start.float() + 1e-6).bfloat16()  # far below half a bf16 step at 0.01-0.03 (~3e-5)
    large = (start.float() + 1e-3).bfloat16()
    result = stats(tmp_path, {W: start}, [{W: tiny}, {W: large}])
    assert result["checkpoints"][0]["model"]["changed_exact"] == 0.0
    assert result["checkpoints"][1]["model"]["changed_exact"] == 1.0
    for r in result["checkpoints"]:  # stored in bf16: what a bf16 copy shows is what is stored
        assert r["model"]["changed_bf16"] == r["model"]["changed_exact"]
    # a float32 update of 1e-6 shows in float32 storage, and not in a bf16 copy of it
    fine = stats(tmp_path / "f32", {W: start.float()}, [{W: start.float() + 1e-6}])["checkpoints"][0]["model"]
    assert (fine["changed_exact"], fine["changed_bf16"]) == (1.0, 0.0)
    assert result["stored_dtypes"]["start"] == {"BF16": 1}


def test_a_planted_rank_two_update_has_rank_two(tmp_path):
    g = torch.Generator().manual_seed(2)
    start = torch.randn(48, 80, generator=g)
    u, _ = torch.linalg.qr(torch.randn(48, 2, generator=g))
    v, _ = torch.linalg.qr(torch.randn(80, 2, generator=g))
    delta = 0.3 * (u[:, :1] @ v[:, :1].T) + 0.2 * (u[:, 1:] @ v[:, 1:].T)  # σ = 0.3, 0.2
    result = stats(tmp_path, {Q: start}, [{Q: start + delta}])
    m = result["checkpoints"][0]["matrices"][Q]
    assert m["energy_rank"] == 2 and not m["energy_rank_lower_bound"]
    assert m["stable_rank"] == pytest.approx((0.09 + 0.04) / 0.09, rel=1e-4)
    # at 60% of the energy, one direction (0.09 / 0.13 = 69%) is enough
    assert rank_of(delta, 0.6, 256, 0)["energy_rank"] == 1
    assert result["checkpoints"][0]["rank"]["q_proj"]["median_energy_rank_share"] == pytest.approx(2 / 48)


def test_the_randomized_spectrum_finds_a_planted_rank_and_bounds_a_full_one():
    g = torch.Generator().manual_seed(3)
    u, _ = torch.linalg.qr(torch.randn(1100, 3, generator=g))
    v, _ = torch.linalg.qr(torch.randn(1200, 3, generator=g))
    planted = u @ torch.diag(torch.tensor([3.0, 2.0, 1.0])) @ v.T
    low = rank_of(planted, 0.95, 64, 0)  # short side 1100 > EXACT_SVD_DIM: the randomized path
    assert low["energy_rank"] == 3 and not low["energy_rank_lower_bound"]  # (9+4)/14 = 93% < 95%
    assert rank_of(planted, 0.9, 64, 0)["energy_rank"] == 2
    assert low["stable_rank"] == pytest.approx(14 / 9, rel=1e-4)
    full = rank_of(torch.randn(1100, 1200, generator=g), 0.9, 64, 0)
    assert full["energy_rank"] == 64 and full["energy_rank_lower_bound"]
    assert rank_of(torch.zeros(4, 5), 0.9, 64, 0)["stable_rank"] is None


def test_two_seeds_with_a_known_overlap(tmp_path):
    start = torch.zeros(1000)
    a, b = start.clone(), start.clone()
    a[:600] = 1.0
    b[300:900] = 1.0
    result = stats(tmp_path, {W: start.view(10, 100)}, [{W: a.view(10, 100)}, {W: b.view(10, 100)}])
    (pair,) = result["overlap"]
    assert (pair["a"], pair["b"]) == (0, 1)
    assert pair["jaccard"] == pytest.approx(300 / 900)
    expected = 600 * 600 / 1000
    assert pair["random_jaccard"] == pytest.approx(expected / (1200 - expected))


def test_spikes_kept_and_undone(tmp_path):
    g = torch.Generator().manual_seed(4)
    base = torch.randn(100, 100, generator=g) * 0.01
    start = base.clone().flatten()
    start[:10] += 5.0  # the 10 spikes (top 0.1% of 10,000 entries)
    start[10:] += 1e-4 * torch.randn(9990, generator=g)
    kept = start.clone()
    kept[:5] -= 0.2  # moved by 4% of the spike: within 10%, kept
    kept[5:10] = base.flatten()[5:10]  # undone
    result = stats(tmp_path, {W: start.view(100, 100)}, [{W: kept.view(100, 100)}], base={W: base},
                   spike_fraction=0.1)
    assert result["checkpoints"][0]["spikes"] == {"spikes": 10, "kept": 0.5}
    (tmp_path / "none").mkdir()
    assert stats(tmp_path / "none", {W: start.view(100, 100)}, [{W: kept.view(100, 100)}])["checkpoints"][0][
        "spikes"] is None
