"""The calibration passes of `rejuv apply`: token statistics, the attribution loop, and the fused and reset
models they are measured on, held in memory.

Everything here runs a loaded model (torch, transformers); the recipe imports this
module only when a calibration file is given, so fusion alone starts without them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rejuv.data.calibration import Calibration
from rejuv.errors import RejuvError
from rejuv.io.format import as_torch, numpy_dtype, rows_of
from rejuv.io.reader import Checkpoint
from rejuv.method import attribution
from rejuv.method.arch import ArchAdapter, Neurons
from rejuv.method.attribution import Target, TokenStats, attribute_sample, mean_entropy
from rejuv.method.fusion import FusedStream, FusionLayout
from rejuv.method.selection import ResetSet
from rejuv.modeling import load_frozen_model
from rejuv.progress import progress_bar


@dataclass(frozen=True)
class PassOptions:
    """How the calibration passes load and run a model."""

    dtype: str = "float32"
    device: str = "cpu"
    batch_size: int = 8  # samples per token-statistics pass
    ranking: str = "global"
    trust_remote_code: bool = False
    allow_pickle: bool = False
    progress: bool = True



def load_model(path: str | Path, opts: PassOptions, adapter_base: str | None = None):
    """A model for the passes (an adapter as its fine-tuned model over `adapter_base`)."""
    return load_frozen_model(path, opts.dtype, opts.device, opts.trust_remote_code, opts.allow_pickle, opts.progress,
                             adapter_base=adapter_base)


def load_base_like_sft(base_path: str | Path, opts: PassOptions, layout: FusionLayout, sft: Checkpoint):
    """The base model, with SFT-only vocabulary rows added when SFT grew the vocabulary."""
    model = load_model(base_path, opts)
    if layout.resized:
        model.resize_token_embeddings(layout.sft_vocab, mean_resizing=False)
        with torch.no_grad():
            for name in layout.resized:
                param = model.get_parameter(name)
                param[layout.base_vocab:] = sft.read(name)[layout.base_vocab:].to(param)
    return model


def entropy_stats(model, adapter: ArchAdapter, calib: Calibration, opts: PassOptions, what: str
                  ) -> list[TokenStats]:
    with progress_bar(opts.progress, len(calib.samples), f"entropy ({what})", "sample") as bar:
        return attribution.response_token_stats(model, adapter, calib.samples, opts.batch_size, progress=bar)


def token_accuracy(stats: list[TokenStats], calib: Calibration) -> float:
    """Teacher-forced top-1 accuracy over every response position: argmax = the gold next token."""
    hits = total = 0
    for s, sample in zip(stats, calib.samples, strict=True):
        gold = torch.tensor([sample.input_ids[p + 1] for p in sample.predict_positions])
        hits += int((s.argmax == gold).sum())
        total += len(gold)
    return hits / total


def entropy_at(stats: list[TokenStats], targets: list[Target], calib: Calibration) -> float | None:
    """Mean entropy of `stats` at the target positions."""
    if not targets:
        return None
    values = [float(stats[t.sample].entropy[t.position - calib.samples[t.sample].predict_positions.start])
              for t in targets]
    return sum(values) / len(values)


@dataclass(frozen=True)
class Measured:
    """What the manifest reports of one model on the calibration rows."""

    entropy: float
    accuracy: float  # teacher-forced top-1 accuracy on the response tokens
    at_targets: float | None  # mean entropy at the target positions


def measure(model, adapter: ArchAdapter, calib: Calibration, opts: PassOptions, what: str,
            targets: list[Target]) -> tuple[Measured, list[TokenStats]]:
    stats = entropy_stats(model, adapter, calib, opts, what)
    return Measured(mean_entropy(stats), token_accuracy(stats, calib), entropy_at(stats, targets, calib)), stats


def find_reset_set(model, adapter: ArchAdapter, sizes: dict[Neurons, int], calib: Calibration, targets: list[Target],
                   opts: PassOptions, rhos: list[float]) -> tuple[ResetSet, list[float]]:
    """Attribute every target (one forward per sample) and unite the top neurons at every ρ of `rhos` (each
    target's neurons are ranked once; a smaller ρ keeps a prefix of the same ranking). Progress counts targets."""
    reset = ResetSet(list(sizes), sizes, max(rhos), opts.ranking, other_rhos=rhos)
    errors: list[float] = []
    by_sample: dict[int, list] = {}
    for t in targets:
        by_sample.setdefault(t.sample, []).append(t)
    with progress_bar(opts.progress, len(targets), "attribution", "target") as bar:
        for i, sample_targets in by_sample.items():
            scores, err = attribute_sample(model, adapter, reset.neurons, calib.samples[i], sample_targets)
            reset.add(scores)
            errors.extend(err.tolist())
            bar.update(len(sample_targets))
    return reset, errors


def _parameters(model) -> dict[str, torch.nn.Parameter]:
    return dict(model.named_parameters(remove_duplicate=False))


def _in_memory(params: dict[str, torch.nn.Parameter], layout: FusionLayout, config: dict, name: str,
               where: str) -> torch.Tensor:
    """The loaded model's values of checkpoint tensor `name` (a view: an expert's slice of a stacked tensor)."""
    param_name, index = layout.adapter.memory_slot(name, config)
    param = params.get(param_name)
    if param is None:
        raise RejuvError(f"{where}: tensor {name} is not a parameter of the loaded model")
    return param[index] if index else param


def fuse_in_memory(model, base: Checkpoint, sft: Checkpoint, layout: FusionLayout, alpha: float) -> None:
    """Turn the loaded SFT model into the fused one, with exactly the values the output stores (the shard
    writer's own arithmetic, then the cast to the model's compute dtype), so the fused and reset models
    are measured without writing or loading them."""
    stream = FusedStream(base, sft, alpha)
    params = _parameters(model)
    with torch.no_grad():
        for spec in layout.outputs:
            param = _in_memory(params, layout, sft.config, spec.name, str(sft.path))
            fused = np.empty(spec.shape, dtype=numpy_dtype(spec.dtype))
            stream.fill(spec, 0, rows_of(spec.shape), fused)
            param.copy_(as_torch(fused).to(param.device, param.dtype))


@contextlib.contextmanager
def reset_in_memory(model, base: Checkpoint, resets: dict[str, dict], layout: FusionLayout) -> Iterator[None]:
    """Within the block, the reset entries of the (fused) model hold their base values, cast to the stored
    dtype as the output stores them; the fused values come back afterwards."""
    params = _parameters(model)
    stored = {spec.name: spec.dtype for spec in layout.outputs}
    saved = []
    with torch.no_grad():
        try:
            for name, r in resets.items():
                param = _in_memory(params, layout, base.config, name, str(base.path))
                idx = torch.tensor(r["indices"], dtype=torch.long)
                values = as_torch(base.read_array(name, 0, rows_of(base.tensors[name].shape)).astype(
                    numpy_dtype(stored[name]))).to(param.device, param.dtype)
                if r["axis"] == 0:
                    saved.append((param, idx, 0, param[idx].clone()))
                    param[idx] = values[idx]
                else:
                    saved.append((param, idx, 1, param[:, idx].clone()))
                    param[:, idx] = values[:, idx]
            yield
        finally:
            for param, idx, axis, fused in reversed(saved):
                if axis == 0:
                    param[idx] = fused
                else:
                    param[:, idx] = fused
