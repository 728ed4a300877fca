"""The calibration passes of `rejuv apply`: token entropies, the attribution loop, undoing a reset.

Everything here runs a loaded model (torch, transformers); the recipe imports this
module only when a calibration file is given, so fusion alone starts without them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from rejuv.arch import ArchAdapter, Neurons
from rejuv.attribution import TokenStats, attribute_sample, group_targets, response_token_stats
from rejuv.calibration import Calibration
from rejuv.checkpoint import Checkpoint
from rejuv.fusion import FusionPlan, fuse_tensor
from rejuv.modeling import load_frozen_model
from rejuv.selection import ResetSet

if TYPE_CHECKING:
    from rejuv.apply import ApplyConfig


def _bar(cfg: ApplyConfig, total: int, desc: str, unit: str):
    return tqdm(total=total, desc=desc, unit=unit, disable=not cfg.progress or None, leave=False)


def load_model(path: str | Path, cfg: ApplyConfig):
    return load_frozen_model(path, cfg.dtype, cfg.device, cfg.trust_remote_code, cfg.allow_pickle, cfg.progress)


def load_base_like_sft(cfg: ApplyConfig, plan: FusionPlan, sft: Checkpoint):
    """The base model, with SFT-only vocabulary rows added when SFT grew the vocabulary."""
    model = load_model(cfg.base, cfg)
    if plan.resized:
        model.resize_token_embeddings(plan.sft_vocab, mean_resizing=False)
        with torch.no_grad():
            for name in plan.resized:
                param = model.get_parameter(name)
                param[plan.base_vocab:] = sft.read(name)[plan.base_vocab:].to(param)
    return model


def entropy_stats(model, adapter: ArchAdapter, calib: Calibration, cfg: ApplyConfig, what: str
                  ) -> list[TokenStats]:
    with _bar(cfg, len(calib.samples), f"entropy ({what})", "sample") as bar:
        return response_token_stats(model, adapter, calib.samples, cfg.batch_size, progress=bar)


def token_accuracy(stats: list[TokenStats], calib: Calibration) -> float:
    """Teacher-forced top-1 accuracy over every response position: argmax = the gold next token."""
    hits = total = 0
    for s, sample in zip(stats, calib.samples, strict=True):
        gold = torch.tensor([sample.input_ids[p + 1] for p in sample.predict_positions])
        hits += int((s.argmax == gold).sum())
        total += len(gold)
    return hits / total


def entropy_at(stats: list[TokenStats], targets, calib: Calibration) -> float | None:
    """Mean entropy of `stats` at the target positions."""
    if not targets:
        return None
    values = [float(stats[t.sample].entropy[t.position - calib.samples[t.sample].predict_positions.start])
              for t in targets]
    return sum(values) / len(values)


# What the same attribution pass would reset at other ρ, reported beside the chosen one (its union grows
# with the targets, so a user reads ρ against the whole-model share it gives).
RHO_FACTORS = (0.1, 0.3, 1.0, 3.0)


def find_reset_set(model, adapter: ArchAdapter, sizes: dict[Neurons, int], calib: Calibration, targets,
                   cfg: ApplyConfig) -> tuple[ResetSet, list[float]]:
    """Attribute every target (grouped by sample, `cfg.batch_size` copies per pass) and unite the top neurons."""
    others = [cfg.rho * f for f in RHO_FACTORS if cfg.rho * f < 1.0]
    reset = ResetSet(list(sizes), sizes, cfg.rho, cfg.ranking, other_rhos=others)
    errors: list[float] = []
    by_sample: dict[int, list] = {}
    for t in targets:
        by_sample.setdefault(t.sample, []).append(t)
    with _bar(cfg, len(by_sample), "attribution", "sample") as bar:
        for i, sample_targets in by_sample.items():
            for group in group_targets(sample_targets, cfg.batch_size):
                scores, err = attribute_sample(model, adapter, reset.neurons, calib.samples[i], group)
                reset.add(scores)
                errors.extend(err.tolist())
            bar.update(1)
    return reset, errors


def unreset(model, base: Checkpoint, sft: Checkpoint, alpha: float, resets: dict[str, dict]) -> None:
    """Turn the loaded rejuvenated model back into the fused one, touching only reset entries."""
    with torch.no_grad():
        for name, r in resets.items():
            idx = torch.tensor(r["indices"], dtype=torch.long)
            s, b = sft.read(name), base.read(name)
            s_part, b_part = (s[idx], b[idx]) if r["axis"] == 0 else (s[:, idx], b[:, idx])
            fused = fuse_tensor(s_part, b_part, alpha, s.dtype)  # as fusion alone would store it
            param = model.get_parameter(name)
            if r["axis"] == 0:
                param[idx] = fused.to(param)
            else:
                param[:, idx] = fused.to(param)
