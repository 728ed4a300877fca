"""Synthetic Llama-shaped checkpoints of any size, for benchmarks and memory tests.

Tensors are generated one at a time from a seed and streamed to disk through the
same shard writer `rejuv apply` uses, so a multi-GB model never sits in memory.
The folder has a real Llama config; the weights are random (not a trained model).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from rejuv.io.format import as_torch
from rejuv.io.writer import OutputTensor, write_safetensors_shards

_LAYER_TENSORS = (
    ("input_layernorm", "h"), ("self_attn.q_proj", "q"), ("self_attn.k_proj", "kv"), ("self_attn.v_proj", "kv"),
    ("self_attn.o_proj", "o"), ("post_attention_layernorm", "h"), ("mlp.gate_proj", "ff"), ("mlp.up_proj", "ff"),
    ("mlp.down_proj", "down"),
)


def llama_config(hidden: int, layers: int, intermediate: int, vocab: int, heads: int, kv_heads: int,
                 dtype: str, tied: bool = False) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
        "intermediate_size": intermediate, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "vocab_size": vocab, "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5, "tie_word_embeddings": tied, "hidden_act": "silu", "dtype": dtype,
        "bos_token_id": 1, "eos_token_id": 2,
    }


def write_synthetic_model(path: str | Path, hidden: int = 512, layers: int = 4, intermediate: int | None = None,
                          vocab: int = 1024, heads: int = 8, kv_heads: int | None = None, dtype: str = "bfloat16",
                          seed: int = 0, max_shard_bytes: int = 2 * 1024**3, tied: bool = False) -> Path:
    """Write a random Llama checkpoint to `path` (created); returns the path. `tied`: the head is the
    embedding (no lm_head tensor), as in SmolLM and Llama 3.2 1B."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    intermediate = intermediate or 4 * hidden
    kv_heads = kv_heads or heads
    head_dim = hidden // heads
    shapes = {"h": (hidden,), "q": (hidden, hidden), "kv": (kv_heads * head_dim, hidden), "o": (hidden, hidden),
              "ff": (intermediate, hidden), "down": (hidden, intermediate)}
    specs = [OutputTensor("model.embed_tokens.weight", (vocab, hidden), dtype)]
    for layer in range(layers):
        for module, shape in _LAYER_TENSORS:
            specs.append(OutputTensor(f"model.layers.{layer}.{module}.weight", shapes[shape], dtype))
    specs.append(OutputTensor("model.norm.weight", (hidden,), dtype))
    if not tied:
        specs.append(OutputTensor("lm_head.weight", (vocab, hidden), dtype))

    def fill(spec: OutputTensor, start: int, stop: int, block) -> None:
        gen = torch.Generator().manual_seed(
            seed * 1_000_003 + sum(map(ord, spec.name)) * 31 + len(spec.name) + start * 7_919)
        out = as_torch(block)
        if len(spec.shape) == 1:
            out.copy_(1.0 + 0.1 * torch.randn(out.shape, generator=gen))
        else:
            out.copy_(0.02 * torch.randn(out.shape, generator=gen))

    write_safetensors_shards(path, specs, fill, max_shard_bytes)
    config = llama_config(hidden, layers, intermediate, vocab, heads, kv_heads, dtype, tied)
    (path / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return path


def perturb_checkpoint(src: str | Path, dst: str | Path, scale: float = 0.01, seed: int = 1,
                       max_shard_bytes: int = 2 * 1024**3) -> Path:
    """A copy of `src` with seeded noise on every tensor (a stand-in 'SFT' model), streamed."""
    from rejuv.io.reader import Checkpoint
    from rejuv.io.writer import copy_aux_files

    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    with Checkpoint(src) as ckpt:
        specs = [OutputTensor(n, ckpt.tensors[n].shape, ckpt.tensors[n].dtype) for n in ckpt.names()]
        order = {spec.name: i for i, spec in enumerate(specs)}

        def fill(spec: OutputTensor, start: int, stop: int, block) -> None:
            t = ckpt.read_rows(spec.name, start, stop).float()
            gen = torch.Generator().manual_seed(seed * 7919 + order[spec.name] * 1_000_003 + start)
            as_torch(block).copy_(t + scale * torch.randn(t.shape, generator=gen))

        write_safetensors_shards(dst, specs, fill, max_shard_bytes)
        copy_aux_files(Path(src), dst)
    return dst
