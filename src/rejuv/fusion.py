"""Base-anchored fusion θ_F = α·θ_S + (1−α)·θ_B, as a streaming map over tensors.

`plan_fusion` checks that the two checkpoints line up (same architecture, same
tensor names and shapes) before anything is written, and lays out the output.
`fuse_tensor` then turns one pair of tensors into one fused tensor, so a caller
holds at most a few tensors at a time, whatever the model size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from rejuv.arch import ArchAdapter, adapter_for
from rejuv.checkpoint import Checkpoint, OutputTensor, natural_key
from rejuv.errors import RejuvError

# Config fields that must agree for two checkpoints to be fused tensor by tensor.
_SHAPE_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                 "intermediate_size", "head_dim")


@dataclass
class FusionPlan:
    adapter: ArchAdapter
    outputs: list[OutputTensor]
    base_vocab: int | None = None
    sft_vocab: int | None = None
    resized: list[str] = field(default_factory=list)  # tensors with SFT-only vocabulary rows

    @property
    def vocab_resized(self) -> dict | None:
        if not self.resized:
            return None
        return {"base_rows": self.base_vocab, "sft_rows": self.sft_vocab, "tensors": self.resized,
                "note": "rows present in both were fused; rows only in the SFT model were kept as SFT"}


def plan_fusion(base: Checkpoint, sft: Checkpoint) -> FusionPlan:
    """Check base and SFT line up; refuse, naming the first offending tensor, if not."""
    adapter = adapter_for(sft.config, where=str(sft.path))
    base_adapter = adapter_for(base.config, where=str(base.path))
    if base_adapter.family != adapter.family:
        raise RejuvError(f"architectures differ: base {base.path} is {base.model_type!r}, "
                         f"SFT {sft.path} is {sft.model_type!r}")
    for key in _SHAPE_FIELDS:
        if base.config.get(key) != sft.config.get(key):
            raise RejuvError(f"config field {key} differs: base {base.path} has {base.config.get(key)}, "
                             f"SFT {sft.path} has {sft.config.get(key)}")
    missing_in_sft = [n for n in base.names() if n not in sft.tensors]
    missing_in_base = [n for n in sft.names() if n not in base.tensors]
    if missing_in_sft:
        raise RejuvError(f"tensor {missing_in_sft[0]} is in base {base.path} but missing from SFT {sft.path}"
                         + _more(missing_in_sft))
    if missing_in_base:
        raise RejuvError(f"tensor {missing_in_base[0]} is in SFT {sft.path} but missing from base {base.path}"
                         + _more(missing_in_base))

    plan = FusionPlan(adapter, [])
    vocab_names = adapter.vocab_tensors()
    for name in sorted(sft.tensors, key=natural_key):
        s, b = sft.tensors[name], base.tensors[name]
        if s.shape != b.shape:
            grew_vocab = (name in vocab_names and len(s.shape) == 2 and s.shape[1:] == b.shape[1:]
                          and s.shape[0] > b.shape[0])
            if not grew_vocab:
                raise RejuvError(f"tensor {name} has shape {list(s.shape)} in SFT but {list(b.shape)} in base")
            plan.resized.append(name)
            plan.base_vocab, plan.sft_vocab = b.shape[0], s.shape[0]
        plan.outputs.append(OutputTensor(name, s.shape, s.dtype))
    return plan


def _more(names: list[str]) -> str:
    return f" (and {len(names) - 1} more)" if len(names) > 1 else ""


CHUNK = 1 << 18  # elements per step: float32 temporaries stay in cache, ~3× faster than whole tensors


def fuse_tensor(sft: torch.Tensor, base: torch.Tensor, alpha: float,
                out_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """α·S + (1−α)·B computed in float32, stored as `out_dtype`. Endpoints are exact copies (−0.0 and all).

    Works through the tensor in chunks; each element sees exactly the operations of
    `(α·S.float() + (1−α)·B.float()).to(out_dtype)`, so the bytes are the same.
    """
    if not sft.is_floating_point():
        return sft.clone()
    if alpha == 1.0:
        return sft.to(out_dtype, copy=True)
    if sft.shape != base.shape:  # vocabulary grown by SFT: new rows stay SFT
        out = sft.to(out_dtype, copy=True)
        out[: base.shape[0]] = fuse_tensor(sft[: base.shape[0]], base, alpha, out_dtype)
        return out
    if alpha == 0.0:
        return base.to(out_dtype, copy=True)
    out = torch.empty(sft.shape, dtype=out_dtype)
    flat_sft, flat_base, flat_out = sft.reshape(-1), base.reshape(-1), out.view(-1)
    for start in range(0, flat_out.numel(), CHUNK):
        stop = start + CHUNK
        acc = flat_sft[start:stop].to(torch.float32) * alpha
        acc.add_(flat_base[start:stop].to(torch.float32) * (1.0 - alpha))
        flat_out[start:stop] = acc
    return out


def check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise RejuvError(f"alpha must lie in [0, 1], got {alpha}")
    return alpha
