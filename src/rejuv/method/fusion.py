"""Base-anchored fusion θ_F = α·θ_S + (1−α)·θ_B = θ_B + α·(θ_S − θ_B), as a streaming map over tensors.

`fusion_layout` checks that the two checkpoints line up (same architecture, same
tensor names and shapes) before anything is written, and lays out the output.
`FusedStream.fill` then produces the output block of rows by block of rows for
the shard writer (reading the same rows of both inputs, `fuse_into`, and the
neuron reset of `rejuv apply` where planned), so memory stays at a few blocks
whatever the model size. The arithmetic is numpy's (bfloat16 via `ml_dtypes`),
so fusion alone never imports torch; its bytes are torch's all the same.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from rejuv.errors import RejuvError
from rejuv.io.format import FLOAT_DTYPES, as_numpy, dtype_from_name, natural_key, numpy_dtype, row_nbytes, rows_of
from rejuv.io.reader import Checkpoint
from rejuv.io.writer import OutputTensor
from rejuv.method.arch import ArchAdapter, adapter_for
from rejuv.method.reset import apply_reset

if TYPE_CHECKING:
    import torch

# Config fields that must agree for two checkpoints to be fused tensor by tensor.
_SHAPE_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                 "intermediate_size", "head_dim")


@dataclass
class FusionLayout:
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


def fusion_layout(base: Checkpoint, sft: Checkpoint) -> FusionLayout:
    """Check base and SFT line up; refuse, naming the first offending tensor, if not."""
    adapter = adapter_for(sft.config, where=str(sft.path))
    base_adapter = adapter_for(base.config, where=str(base.path))
    if base_adapter.family != adapter.family:
        raise RejuvError(f"architectures differ: base {base.path} is {base.model_type!r}, "
                         f"SFT {sft.path} is {sft.model_type!r}")
    for key in _SHAPE_FIELDS:
        if _effective(base.config, key) != _effective(sft.config, key):
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

    plan = FusionLayout(adapter, [])
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


def _effective(config: dict, key: str):
    """A shape field as transformers reads it: a head size or key/value head count left out is its default (what
    a `save_pretrained` of the same model writes out)."""
    value = config.get(key)
    heads, hidden = config.get("num_attention_heads"), config.get("hidden_size")
    if value is None and key == "head_dim" and isinstance(heads, int) and isinstance(hidden, int) and heads:
        return hidden // heads
    if value is None and key == "num_key_value_heads":
        return heads
    return value


def _more(names: list[str]) -> str:
    return f" (and {len(names) - 1} more)" if len(names) > 1 else ""


CHUNK = 1 << 16  # elements per arithmetic step: the float32 scratch stays in cache (measured fastest)


def fuse_into(out: np.ndarray, sft: np.ndarray, base: np.ndarray, alpha: float,
              scratch: tuple[np.ndarray, np.ndarray] | None = None, finite: bool = False) -> np.ndarray:
    """Write α·S + (1−α)·B, computed in float32, into `out` (same shape as both inputs); returns `out`.

    Each element sees exactly the operations of torch's `(α·S.float() + (1−α)·B.float()).to(out.dtype)`
    (α and 1−α rounded to float32, a float32 product each, a float32 sum, one round-to-nearest-even
    cast), so the bytes are those of the plain expression and of mergekit's `linear`; the endpoints
    α = 1 and α = 0 are exact copies (−0.0 and all). `scratch` is two float32 buffers of `CHUNK`
    elements that a streaming caller reuses from block to block. With `finite`, a NaN or Inf in the result
    raises `NonFiniteWeights` (without it they propagate, as in torch).
    """
    if alpha == 1.0 or sft.dtype not in FLOAT_DTYPES:
        out[...] = sft
        return _finite_or_raise(out) if finite else out
    if alpha == 0.0:
        out[...] = base
        return _finite_or_raise(out) if finite else out
    a, b = scratch if scratch is not None else (np.empty(CHUNK, np.float32), np.empty(CHUNK, np.float32))
    weight_sft, weight_base = np.float32(alpha), np.float32(1.0 - alpha)
    flat_sft, flat_base, flat_out = sft.reshape(-1), base.reshape(-1), out.reshape(-1, copy=False)
    with np.errstate(all="ignore"):  # inf and NaN weights propagate silently, as in torch
        for start in range(0, flat_out.size, CHUNK):
            stop = min(start + CHUNK, flat_out.size)
            acc, other = a[: stop - start], b[: stop - start]
            acc[...] = flat_sft[start:stop]  # in place: no allocation; the casts are vectorised loops
            other[...] = flat_base[start:stop]
            np.multiply(acc, weight_sft, out=acc)
            np.multiply(other, weight_base, out=other)
            flat_out[start:stop] = np.add(acc, other, out=acc)
            # A sum of the chunk is NaN or ±inf when any element is (a cache-resident pass); the exact check
            # runs only then, since a sum of huge finite values may overflow.
            if finite and not math.isfinite(acc.sum()) and not np.isfinite(acc).all():
                raise NonFiniteWeights("NaN or Inf values")
    return out


class NonFiniteWeights(RejuvError):
    """A fused block holds NaN or Inf; the caller names the tensor and the checkpoint it came from."""


def all_finite(array: np.ndarray) -> bool:
    """No NaN or Inf in a float array; 16-bit floats by their exponent bits (numpy's isfinite on ml_dtypes'
    bfloat16 is ~7x slower)."""
    if array.dtype not in FLOAT_DTYPES:
        return True
    if array.dtype.itemsize == 2:
        mask = 0x7F80 if array.dtype == numpy_dtype("BF16") else 0x7C00
        return not ((array.view(np.uint16) & mask) == mask).any()
    return bool(np.isfinite(array).all())


def _finite_or_raise(out: np.ndarray) -> np.ndarray:
    if not all_finite(out):
        raise NonFiniteWeights("NaN or Inf values")
    return out


def fuse_tensor(sft: torch.Tensor, base: torch.Tensor, alpha: float, out_dtype: torch.dtype | str = "F32"
                ) -> torch.Tensor:
    """α·S + (1−α)·B as a new `out_dtype` tensor; SFT-only vocabulary rows (S longer than B) stay SFT."""
    import torch

    dtype = dtype_from_name(out_dtype) if sft.is_floating_point() else sft.dtype
    out = torch.empty(sft.shape, dtype=dtype)
    s, b, o = as_numpy(sft.contiguous()), as_numpy(base.contiguous()), as_numpy(out)
    if sft.shape == base.shape:
        fuse_into(o, s, b, alpha)
        return out
    shared = base.shape[0]
    fuse_into(o[:shared], s[:shared], b, alpha)
    o[shared:] = s[shared:]
    return out


class FullDelta:
    """The SFT side of a fusion held as a full checkpoint: α·θ_S + (1−α)·θ_B, torch's and mergekit's bytes."""

    def __init__(self, sft: Checkpoint):
        self.source = sft

    def needs_base(self, name: str, alpha: float, reset: bool) -> bool:
        return alpha != 1.0 or reset

    def fuse(self, name: str, start: int, stop: int, shared: int, base: np.ndarray | None, alpha: float,
             out: np.ndarray, local: threading.local) -> None:
        sft = FusedStream._read(self.source, name, start, stop, local, "sft")
        local.last_sft = sft  # for naming the culprit of a non-finite block
        if base is None:
            out[...] = _finite_or_raise(sft)
        elif out.ndim == 0:  # a scalar tensor is one row
            fuse_into(out, sft, base, alpha, local.scratch, finite=True)
        else:
            fuse_into(out[:shared], sft[:shared], base, alpha, local.scratch, finite=True)
            out[shared:] = _finite_or_raise(sft[shared:])

    def culprit(self, local: threading.local) -> bool:
        """Whether the SFT block just read holds the NaN or Inf."""
        return not all_finite(local.last_sft)


class LowRankDelta:
    """The SFT side of a fusion held as a LoRA adapter over the base (`rejuv.io.adapter.LoraCheckpoint`):
    θ_F = θ_B + α·s·B·A, each block of rows of B·A computed in float32 from the pair, no merged copy read or
    written; the tensors the adapter leaves alone are the base's, exactly."""

    def __init__(self, sft):
        self.source = sft

    def needs_base(self, name: str, alpha: float, reset: bool) -> bool:
        return True

    def fuse(self, name: str, start: int, stop: int, shared: int, base: np.ndarray, alpha: float,
             out: np.ndarray, local: threading.local) -> None:
        local.last_sft = None
        if self.source.low_rank(name) is None:
            out[...] = _finite_or_raise(base)
            return
        if getattr(local, "lora_a", (None,))[0] != name:  # A is the same for every block of the tensor
            local.lora_a = (name, self.source.lora_a(name))
        a = local.lora_a[1]
        step = max(1, CHUNK * 16 // max(1, a.shape[1]))  # rows per float32 sub-block: a few MB, not the block's size
        weight = np.float32(alpha)
        with np.errstate(all="ignore"):
            for first in range(0, stop - start, step):
                last = min(first + step, stop - start)
                delta = self.source.delta_rows(name, start + first, start + last, a=a)
                local.last_sft = delta
                np.multiply(delta, weight, out=delta)
                delta += base[first:last].astype(np.float32)
                out[first:last] = _finite_or_raise(delta.astype(out.dtype))

    def culprit(self, local: threading.local) -> bool:
        return local.last_sft is not None and not all_finite(local.last_sft)


def delta_of(sft) -> FullDelta | LowRankDelta:
    """How the SFT side enters the fusion: a full checkpoint, or a low-rank pair over the base."""
    return LowRankDelta(sft) if hasattr(sft, "low_rank") else FullDelta(sft)


class FusedStream:
    """Rows of the output tensors, fused and (where a reset plan says so) reset, for the shard writer.

    The SFT side is a delta from the base, held either as the full SFT checkpoint or as a LoRA pair
    (`delta_of`): one stream, the same reads of the base, finiteness checks and resets for both.
    `fill` is called from several writer threads; each keeps its own read and scratch buffers, so a block
    costs reads and arithmetic but no allocation.
    """

    def __init__(self, base: Checkpoint, sft, alpha: float, resets: dict[str, dict] | None = None):
        self.base, self.sft, self.alpha = base, sft, alpha
        self.delta = delta_of(sft)
        self.resets = {name: (r["axis"], np.array(sorted(r["indices"]), dtype=np.int64))
                       for name, r in (resets or {}).items()}
        self._local = threading.local()

    def _buffers(self) -> threading.local:
        local = self._local
        if not hasattr(local, "scratch"):
            local.scratch = (np.empty(CHUNK, np.float32), np.empty(CHUNK, np.float32))
            local.sft = local.base = np.empty(0, dtype=np.uint8)
        return local

    @staticmethod
    def _read(ckpt: Checkpoint, name: str, start: int, stop: int, local: threading.local, slot: str):
        nbytes = row_nbytes(ckpt.tensors[name]) * (stop - start)
        if getattr(local, slot).size < nbytes:
            setattr(local, slot, np.empty(nbytes, dtype=np.uint8))
        return ckpt.read_array(name, start, stop, into=getattr(local, slot))

    def fill(self, spec: OutputTensor, start: int, stop: int, out: np.ndarray) -> None:
        local = self._buffers()
        name = spec.name
        base_rows = rows_of(self.base.tensors[name].shape)
        shared = max(0, min(stop, base_rows) - start)  # rows beyond the base vocabulary stay SFT
        reset = self.resets.get(name)
        needs_base = shared and self.delta.needs_base(name, self.alpha, reset is not None)
        base = self._read(self.base, name, start, start + shared, local, "base") if needs_base else None
        try:
            self.delta.fuse(name, start, stop, shared, base, self.alpha, out, local)
        except NonFiniteWeights:
            culprit = self.sft if self.delta.culprit(local) else self.base if base is not None and not all_finite(
                base) else None
            where = f"{culprit.path} holds" if culprit else "the fusion of finite inputs overflowed to"
            raise RejuvError(f"tensor {name} (rows {start}..{stop}): {where} NaN or Inf values; rejuv writes no "
                             "non-finite weights") from None
        if reset is not None and base is not None:
            axis, indices = reset
            if axis == 0:
                indices = indices[(indices >= start) & (indices < start + shared)] - start
            apply_reset(out[:shared], base, axis, indices)
