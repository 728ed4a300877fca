"""Parameter drift (diagnostics/params.py): streamed, pooled statistics against the same figures computed
directly on whole tensors."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import save_file

import rejuv.diagnostics.params as params
from rejuv.diagnostics.params import DriftGroup, layer_of, module_kind, parameter_drift
from rejuv.errors import RejuvError
from rejuv.io.reader import Checkpoint

UP = "model.layers.0.mlp.up_proj.weight"
Q = "model.layers.3.self_attn.q_proj.weight"


def direct(delta: torch.Tensor, base: torch.Tensor, ckpt: torch.Tensor) -> dict:
    d = delta.double().flatten()
    centred = d - d.mean()
    var = float((centred**2).mean())
    top = torch.sort(d.abs(), descending=True).values[: math.ceil(0.001 * d.numel())]
    return {"l2": float(d.norm()), "rel": float(d.norm() / base.double().norm()), "max_abs": float(d.abs().max()),
            "kurtosis": float((centred**4).mean()) / var**2 - 3.0, "top": float((top**2).sum() / (d**2).sum()),
            "norm_change_rel": float((ckpt.double().norm() - base.double().norm()) / base.double().norm()),
            "exact": float((d != 0).double().mean()), "1e-05": float((d.abs() > 1e-5).double().mean())}


def test_module_kind_and_layer_read_from_the_name():
    assert module_kind(UP) == "up_proj" and layer_of(UP) == 0
    assert module_kind(Q) == "q_proj" and layer_of(Q) == 3
    # an expert's projection is an expert kind, not the dense kind it shares its name with
    assert module_kind("model.layers.2.mlp.experts.5.down_proj.weight") == "expert_down_proj"
    assert module_kind("model.layers.2.block_sparse_moe.gate.weight") == "router"
    assert module_kind("model.embed_tokens.weight") == "embedding" and layer_of("model.embed_tokens.weight") is None
    assert module_kind("lm_head.weight") == "unembedding"
    assert module_kind("model.layers.1.input_layernorm.weight") == "norm"
    assert module_kind("model.rotary.inv_freq") == "other"


def test_a_group_streamed_in_chunks_gives_the_whole_tensor_figures(monkeypatch):
    monkeypatch.setattr(params, "CHUNK", 97)  # many chunks, the last one short
    g = torch.Generator().manual_seed(0)
    base = torch.randn(64, 50, generator=g)
    delta = torch.randn(64, 50, generator=g) * 0.01
    delta[::7] = 0.0  # untouched rows: the exact share is below one
    delta[3, 4] = 0.8  # a spike
    ckpt = base + delta
    group = DriftGroup()
    group.add(ckpt - base, base, ckpt)
    got, want = group.summary(), direct(ckpt - base, base, ckpt)
    for key in ("l2", "rel", "max_abs", "kurtosis", "norm_change_rel"):
        assert got[key] == pytest.approx(want[key], rel=1e-9), key
    assert got["frac_changed"]["exact"] == pytest.approx(want["exact"])
    assert got["frac_changed"]["1e-05"] == pytest.approx(want["1e-05"])
    assert params._tensor_top_share(ckpt - base, group) == pytest.approx(want["top"], rel=1e-9)
    assert got["top_0.1pct_share"] == pytest.approx(want["top"], rel=0.05)  # pooled: read from the histogram


def test_merged_groups_equal_one_group_over_both():
    g = torch.Generator().manual_seed(1)
    a_base, b_base = torch.randn(300, generator=g), torch.randn(500, generator=g)
    a_delta, b_delta = torch.randn(300, generator=g) * 1e-3, torch.randn(500, generator=g) * 1e-2
    one, two, both = DriftGroup(), DriftGroup(), DriftGroup()
    one.add(a_delta, a_base, a_base + a_delta)
    two.add(b_delta, b_base, b_base + b_delta)
    one.merge(two)
    both.add(torch.cat([a_delta, b_delta]), torch.cat([a_base, b_base]),
             torch.cat([a_base + a_delta, b_base + b_delta]))
    merged, whole = one.summary(), both.summary()
    for key in ("numel", "l2", "rel", "max_abs", "kurtosis", "top_0.1pct_share", "norm_base", "norm"):
        assert merged[key] == pytest.approx(whole[key], rel=1e-9), key


def test_identical_weights_have_no_kurtosis_and_no_drift():
    base = torch.randn(10, 10, generator=torch.Generator().manual_seed(2))
    group = DriftGroup()
    group.add(torch.zeros_like(base), base, base)
    summary = group.summary()
    assert summary["l2"] == 0.0 and summary["kurtosis"] is None and summary["top_0.1pct_share"] == 0.0
    assert summary["frac_changed"] == {"exact": 0.0, "1e-05": 0.0, "0.001": 0.0}


def write(folder, tensors: dict[str, torch.Tensor]):
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


def test_parameter_drift_pools_tensors_by_kind_and_layer(tmp_path):
    g = torch.Generator().manual_seed(3)
    base = {UP: torch.randn(8, 6, generator=g), Q: torch.randn(6, 6, generator=g)}
    sft = {UP: base[UP] + 0.1, Q: base[Q].clone()}
    with Checkpoint(write(tmp_path / "base", base)) as b, Checkpoint(write(tmp_path / "sft", sft)) as s:
        drift = parameter_drift(b, s, sorted(base))
    assert drift["tensors"][Q]["l2"] == 0.0 and drift["tensors"][UP]["kind"] == "up_proj"
    assert drift["tensors"][UP]["l2"] == pytest.approx(0.1 * math.sqrt(48), rel=1e-5)
    assert set(drift["by_kind"]) == {"up_proj", "q_proj"} and set(drift["by_layer"]) == {"0", "3"}
    assert drift["model"]["l2"] == pytest.approx(drift["tensors"][UP]["l2"])
    assert drift["model"]["numel"] == 48 + 36


def test_a_non_finite_tensor_is_refused_by_name(tmp_path):
    base = {UP: torch.zeros(4, 4)}
    sft = {UP: torch.full((4, 4), float("nan"))}
    with Checkpoint(write(tmp_path / "base", base)) as b, Checkpoint(write(tmp_path / "sft", sft)) as s:
        with pytest.raises(RejuvError, match=rf"sft: tensor {UP} holds NaN or Inf"):
            parameter_drift(b, s, [UP])
