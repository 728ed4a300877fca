"""The reset set: the top-ρ neurons of each target token, united over targets.

Ranking (decision in the spec): one global ranking in logit units over every
neuron of every module kind and layer, top ⌈ρ·total⌉ per target, positive
scores only. `per-module` ranks inside each module instead (top ⌈ρ·n⌉ of that
module), for users who want every module touched in proportion. `reset.reset_entries`
turns the chosen neurons into tensor rows and columns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from rejuv.method.arch import Neurons


def budget(rho: float, count: int) -> int:
    """Neurons kept per target out of `count`: ⌈ρ·count⌉, so any ρ > 0 selects at least one."""
    return min(count, math.ceil(rho * count - 1e-9)) if rho > 0 else 0


class ResetSet:
    """Union of selected neurons, one boolean mask per module, for ρ and, from the same scores, for
    any `other_rhos` (what the same attribution pass would reset at another ρ)."""

    def __init__(self, neurons: list[Neurons], sizes: dict[Neurons, int], rho: float, ranking: str = "global",
                 other_rhos: Sequence[float] = ()):
        self.neurons = neurons
        self.sizes = sizes
        self.rho = float(rho)
        self.rhos = sorted({self.rho, *(float(r) for r in other_rhos)})
        self.ranking = ranking
        self.masks_by_rho = {r: {n: torch.zeros(sizes[n], dtype=torch.bool) for n in neurons} for r in self.rhos}
        self.masks = self.masks_by_rho[self.rho]
        self.targets = 0

    @property
    def total(self) -> int:
        return sum(self.sizes.values())

    @property
    def selected(self) -> int:
        return self.selected_at(self.rho)

    def selected_at(self, rho: float) -> int:
        return sum(int(m.sum()) for m in self.masks_by_rho[rho].values())

    def _unite(self, scores: torch.Tensor, keys: list[Neurons]) -> None:
        """Top-ρ positive columns of `scores` ([targets, Σ sizes of keys]) into each ρ's masks."""
        width = scores.shape[1]
        k_max = budget(self.rhos[-1], width)
        if k_max == 0:
            return
        top = torch.topk(scores, k_max, dim=1)  # sorted: each smaller ρ keeps a prefix
        for rho in self.rhos:
            k = budget(rho, width)
            if k == 0:
                continue
            chosen = torch.zeros_like(scores, dtype=torch.bool)
            chosen.scatter_(1, top.indices[:, :k], top.values[:, :k] > 0)
            start = 0
            for n in keys:
                self.masks_by_rho[rho][n] |= chosen[:, start: start + self.sizes[n]].any(0)
                start += self.sizes[n]

    def add(self, scores: dict[Neurons, torch.Tensor]) -> None:
        """Add the top neurons of each target; `scores[n]` is [targets, size of n]."""
        if self.ranking == "global":
            self._unite(torch.cat([scores[n] for n in self.neurons], dim=1), self.neurons)
        else:
            for n in self.neurons:
                self._unite(scores[n], [n])
        self.targets += next(iter(scores.values())).shape[0]

    def indices(self, rho: float | None = None) -> dict[Neurons, list[int]]:
        """Selected indices per module at ρ (default: this set's own), modules with none left out."""
        masks = self.masks_by_rho[self.rho if rho is None else rho]
        out = {}
        for n in self.neurons:
            idx = torch.nonzero(masks[n]).flatten().tolist()
            if idx:
                out[n] = idx
        return out
