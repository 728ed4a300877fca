import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from rejuv import fuse, rejuvenate
from rejuv.errors import RejuvError
from rejuv.io.format import numpy_dtype
from rejuv.io.reader import Checkpoint
from rejuv.io.writer import OutputTensor
from rejuv.method.fusion import FusedStream, fuse_tensor, fusion_layout

from tiny import build_model, perturbed, save, weights


def test_fuse_tensor_endpoints_are_exact_copies():
    s = torch.tensor([-0.0, 1.5, float("inf")])
    b = torch.tensor([0.0, 2.5, 1.0])
    assert torch.equal(fuse_tensor(s, b, 1.0), s) and str(fuse_tensor(s, b, 1.0)[0]) == "tensor(-0.)"
    assert torch.equal(fuse_tensor(s, b, 0.0), b)
    assert torch.equal(fuse_tensor(s[:2], b[:2], 0.25), 0.25 * s[:2] + 0.75 * b[:2])


@pytest.mark.slow
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_fusion_matches_alpha_s_plus_one_minus_alpha_b(pair, tmp_path, alpha):
    arch, base, sft = pair
    manifest = fuse(base, sft, tmp_path / "out", alpha=alpha, progress=False)
    out, s, b = weights(tmp_path / "out"), weights(sft), weights(base)
    assert out.keys() == s.keys()
    for name in out:
        if alpha == 1.0:
            assert torch.equal(out[name], s[name]), name
        elif alpha == 0.0:
            assert torch.equal(out[name], b[name]), name
        else:
            assert torch.equal(out[name], (alpha * s[name].float() + (1 - alpha) * b[name].float()).to(s[name].dtype))
    assert manifest["reset"] == {} and manifest["neurons_reset"] == 0 and manifest["fusion_only"]
    assert json.loads((tmp_path / "out" / "rejuvenation.json").read_text()) == manifest


def test_bf16_sft_is_fused_in_float32_and_stored_in_bf16(tmp_path):
    base, tok = build_model("llama", seed=0)
    sft = perturbed(base, seed=1).to(torch.bfloat16)
    save(base, tok, tmp_path / "b")
    save(sft, tok, tmp_path / "s")
    fuse(tmp_path / "b", tmp_path / "s", tmp_path / "o", alpha=0.3, progress=False)
    out, s, b = weights(tmp_path / "o"), weights(tmp_path / "s"), weights(tmp_path / "b")
    for name in out:
        assert out[name].dtype == torch.bfloat16
        assert torch.equal(out[name], (0.3 * s[name].float() + 0.7 * b[name].float()).bfloat16())


def test_tied_embeddings_stay_tied(tmp_path):
    from transformers import AutoModelForCausalLM

    base, tok = build_model("qwen3", seed=0, tied=True)
    save(base, tok, tmp_path / "b")
    save(perturbed(base, seed=1), tok, tmp_path / "s")
    fuse(tmp_path / "b", tmp_path / "s", tmp_path / "o", progress=False)
    assert "lm_head.weight" not in weights(tmp_path / "o")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "o")
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


@pytest.mark.slow
def test_vocabulary_grown_by_sft_keeps_the_new_rows(tmp_path, calib_file):
    base, tok = build_model("llama", seed=0)
    sft = perturbed(base, seed=1)
    sft.resize_token_embeddings(len(tok) + 6, mean_resizing=False)
    tok_plus = build_model("llama", seed=0)[1]
    tok_plus.add_tokens([f"<extra{i}>" for i in range(6)])
    save(base, tok, tmp_path / "b")
    save(sft, tok_plus, tmp_path / "s")
    manifest = rejuvenate(tmp_path / "b", tmp_path / "s", calib_file, tmp_path / "o", alpha=0.5, rho=0.01,
                          progress=False)
    v = len(tok)
    assert manifest["vocab_resized"]["base_rows"] == v and manifest["vocab_resized"]["sft_rows"] == v + 6
    assert set(manifest["vocab_resized"]["tensors"]) == {"model.embed_tokens.weight", "lm_head.weight"}
    out, s, b = weights(tmp_path / "o"), weights(tmp_path / "s"), weights(tmp_path / "b")
    for name in manifest["vocab_resized"]["tensors"]:
        assert torch.equal(out[name][v:], s[name][v:])
        assert torch.equal(out[name][:v], 0.5 * s[name][:v] + 0.5 * b[name])


def test_mismatches_are_refused_naming_the_tensor(tmp_path):
    base, tok = build_model("llama", seed=0)
    save(base, tok, tmp_path / "b")
    other, _ = build_model("llama", seed=0, layers=3)
    save(other, tok, tmp_path / "deeper")
    qwen, _ = build_model("qwen3", seed=0)
    save(qwen, tok, tmp_path / "qwen")
    missing = save(perturbed(base, seed=1), tok, tmp_path / "missing")
    state = load_file(missing / "model.safetensors")
    del state["model.layers.1.mlp.up_proj.weight"]
    save_file(state, missing / "model.safetensors", metadata={"format": "pt"})
    cases = {"deeper": "num_hidden_layers", "qwen": "architectures differ",
             "missing": "model.layers.1.mlp.up_proj.weight"}
    for folder, message in cases.items():
        with pytest.raises(RejuvError, match=message):
            fusion_layout(Checkpoint(tmp_path / "b"), Checkpoint(tmp_path / folder))
    wide = dict(load_file(tmp_path / "b" / "model.safetensors"))
    wide["model.norm.weight"] = torch.ones(33)
    (tmp_path / "wide").mkdir()
    (tmp_path / "wide" / "config.json").write_text((tmp_path / "b" / "config.json").read_text())
    save_file(wide, tmp_path / "wide" / "model.safetensors")
    with pytest.raises(RejuvError, match=r"model\.norm\.weight has shape \[33\]"):
        fusion_layout(Checkpoint(tmp_path / "b"), Checkpoint(tmp_path / "wide"))


def test_chunked_fusion_gives_the_bytes_of_the_plain_formula():
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(700, 1000, generator=gen).to(torch.bfloat16)  # 700k elements: several chunks
    b = torch.randn(700, 1000, generator=gen)  # a float32 base beside a bf16 SFT model
    for alpha in (0.3, 0.5, 0.8):
        expected = (alpha * s.float() + (1 - alpha) * b.float()).to(torch.bfloat16)
        assert torch.equal(fuse_tensor(s, b, alpha, torch.bfloat16), expected)
        assert torch.equal(fuse_tensor(s, b, alpha), alpha * s.float() + (1 - alpha) * b.float())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_every_16_bit_value_fuses_to_torchs_bytes(dtype):
    """numpy arithmetic (ml_dtypes for bf16) against torch's expression, on all 65536 bit patterns:
    subnormals, infinities, signed zeros and ties of the final rounding included; NaNs stay NaN."""
    bits = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16)
    s = bits.view(dtype)
    b = s[torch.randperm(s.numel(), generator=torch.Generator().manual_seed(0))]
    for alpha in (0.3, 0.5, 0.8):
        got = fuse_tensor(s, b, alpha, dtype)
        expected = (alpha * s.float() + (1 - alpha) * b.float()).to(dtype)
        nan = expected.isnan()
        assert torch.equal(got.isnan(), nan)
        assert torch.equal(got[~nan].view(torch.int16), expected[~nan].view(torch.int16)), alpha


def test_streamed_blocks_give_the_whole_tensor_result(tmp_path):
    """Tiny blocks (several per tensor, rows split across them) give the bytes of whole-tensor fusion + reset."""
    from rejuv.io.format import as_numpy
    from rejuv.io.writer import OutputTensor, write_safetensors_shards
    from rejuv.method.fusion import FusedStream
    from rejuv.method.reset import apply_reset

    gen = torch.Generator().manual_seed(0)
    sft = {"w": torch.randn(9, 5, generator=gen).to(torch.bfloat16), "emb": torch.randn(7, 3, generator=gen),
           "bias": torch.randn(9, generator=gen), "scale": torch.tensor(2.0), "ids": torch.arange(6)}
    base = {"w": torch.randn(9, 5, generator=gen), "emb": torch.randn(5, 3, generator=gen),  # SFT grew 2 rows
            "bias": torch.randn(9, generator=gen), "scale": torch.tensor(-1.0), "ids": torch.zeros(6, dtype=torch.long)}
    for name, tensors in (("s", sft), ("b", base)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
        save_file(tensors, tmp_path / name / "model.safetensors")
    resets = {"w": {"axis": 1, "indices": [0, 3]}, "bias": {"axis": 0, "indices": [1, 4, 8]},
              "emb": {"axis": 0, "indices": [4]}}
    specs = [OutputTensor(n, tuple(t.shape), t.dtype) for n, t in sft.items()]
    for alpha in (0.3, 1.0):
        out = tmp_path / f"out{alpha}"
        out.mkdir()
        with Checkpoint(tmp_path / "b") as b, Checkpoint(tmp_path / "s") as s:
            write_safetensors_shards(out, specs, FusedStream(b, s, alpha, resets).fill, block_bytes=16, workers=3)
        got = load_file(out / "model.safetensors")
        for name, t in sft.items():
            expected = fuse_tensor(t, base[name], alpha, t.dtype)
            if name in resets:
                apply_reset(as_numpy(expected), as_numpy(base[name]), resets[name]["axis"], resets[name]["indices"])
            assert got[name].dtype == t.dtype and torch.equal(got[name], expected), (alpha, name)
    assert torch.equal(got["ids"], sft["ids"]) and got["scale"] == 2.0
    assert torch.equal(got["emb"][5:], sft["emb"][5:]) and torch.equal(got["emb"][4], base["emb"][4])


@pytest.mark.parametrize("dtype", ["BF16", "F16", "F32"])
@pytest.mark.parametrize("alpha", [0.5, 1.0, 0.0])
def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path, dtype, alpha):
    """NaN or Inf in either input never reaches the output: fusion stops naming the tensor and the checkpoint."""
    from safetensors.numpy import save_file

    from rejuv.method.fusion import all_finite

    np_dtype = numpy_dtype(dtype)
    good = np.ones((4, 8), dtype=np.float32).astype(np_dtype)
    bad = good.copy()
    bad[2, 3] = np.float32("nan") if alpha != 0.0 else np.float32("inf")
    assert all_finite(good) and not all_finite(bad)
    paths = {}
    for name, values in (("base", good), ("sft", bad)) if alpha != 0.0 else (("base", bad), ("sft", good)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text('{"model_type": "llama"}')
        save_file({"model.norm.weight": values}, str(folder / "model.safetensors"))
        paths[name] = folder
    culprit = paths["sft"] if alpha != 0.0 else paths["base"]
    with Checkpoint(paths["base"]) as base, Checkpoint(paths["sft"]) as sft:
        stream = FusedStream(base, sft, alpha)
        spec = OutputTensor("model.norm.weight", (4, 8), dtype)
        out = np.empty((4, 8), dtype=np_dtype)
        with pytest.raises(RejuvError, match=rf"tensor model.norm.weight \(rows 0..4\): {culprit} holds NaN or Inf"):
            stream.fill(spec, 0, 4, out)
