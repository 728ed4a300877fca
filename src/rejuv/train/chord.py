"""CHORD (arXiv 2508.11408): SFT on expert data inside GRPO, with a scheduled weight.

    L = (1 − µ_t) · L_GRPO + µ_t · L_SFT

L_GRPO is TRL's GRPO loss on the step's own completions; L_SFT is the token
mean of −w·log p(y_t) over a batch of expert (prompt, completion) rows drawn
in a seeded cyclic order, each term averaged over its own batch. The weight µ_t
follows the reference implementation's schedule (Trinity-RFT): a linear warm-up
from 0 to `peak` over `warmup_steps`, a half-cosine from `peak` to `valley` over
`decay_steps`, then `valley`. With `phi`, each token's SFT term is weighted by
φ = p·(1 − p) (p the token's probability, detached), which damps tokens the
policy already knows (p → 1) and tokens far from it (p → 0).

The paper's variants: CHORD-µ = peak 0.9, valley 0.05, decay 200 steps, no φ;
CHORD-φ = constant µ 0.1 (peak = valley = 0.1) with φ.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch

from rejuv.data.prompts import sequence_ids


@dataclass(frozen=True)
class ChordSchedule:
    peak: float = 0.9
    valley: float = 0.05
    warmup_steps: int = 0
    decay_steps: int = 200
    phi: bool = False

    def mu(self, step: int) -> float:
        """µ at optimizer step `step` (0-based: the step being taken)."""
        if step < self.warmup_steps:
            return self.peak * step / self.warmup_steps
        into = step - self.warmup_steps
        if self.decay_steps > 0 and into <= self.decay_steps:
            return self.valley + (self.peak - self.valley) * 0.5 * (1.0 + math.cos(math.pi * into / self.decay_steps))
        return self.valley


def chord_sft_loss(token_logps: torch.Tensor, mask: torch.Tensor, phi: bool) -> torch.Tensor:
    """Mean over the batch's completion tokens of −w·log p, w = p(1 − p) detached with `phi`, else 1."""
    weight = torch.ones_like(token_logps)
    if phi:
        p = token_logps.detach().exp()
        weight = p * (1.0 - p)
    mask = mask.to(token_logps.dtype)
    return -(weight * token_logps * mask).sum() / mask.sum().clamp(min=1.0)


def tokenize_expert(rows: list[tuple[str, dict]], tokenizer, templated: bool) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, response ids) per expert row (`data.sft_rows`), by the prompt rule every command shares."""
    out = []
    for where, record in rows:
        ids, start = sequence_ids(record, tokenizer, templated, where)
        out.append((ids[:start], ids[start:]))
    return out


class ExpertBatches:
    """Expert rows in a seeded order, reshuffled each pass, `size` at a time, padded on the right."""

    def __init__(self, rows: list[tuple[list[int], list[int]]], size: int, seed: int, pad_id: int):
        self.rows, self.size, self.pad_id = rows, size, pad_id
        self.rng = random.Random(seed)
        self.order: list[int] = []

    def next(self, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """input ids, attention mask, and the mask of completion tokens among the next-token targets."""
        picked = []
        while len(picked) < self.size:
            if not self.order:
                self.order = list(range(len(self.rows)))
                self.rng.shuffle(self.order)
            picked.append(self.rows[self.order.pop()])
        length = max(len(p) + len(c) for p, c in picked)
        ids = torch.full((len(picked), length), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(picked), length), dtype=torch.long)
        target = torch.zeros((len(picked), length - 1), dtype=torch.bool)
        for i, (p, c) in enumerate(picked):
            ids[i, : len(p) + len(c)] = torch.tensor(p + c)
            attention[i, : len(p) + len(c)] = 1
            target[i, len(p) - 1: len(p) + len(c) - 1] = True  # positions that predict completion tokens
        return ids.to(device), attention.to(device), target.to(device)
