"""The reset set: the top-ρ neurons of each target token, united over targets.

Ranking (decision in the spec): one global ranking in logit units over every
neuron of every module kind and layer, top ⌈ρ·total⌉ per target, positive
scores only. `per-module` ranks inside each module instead (top ⌈ρ·n⌉ of that
module), for users who want every module touched in proportion. `reset.reset_plan`
turns the chosen neurons into tensor rows and columns.
"""

from __future__ import annotations

import math

import torch

from rejuv.arch import Neurons
from rejuv.errors import RejuvError
from rejuv.reset import RANKINGS, check_rho


def budget(rho: float, count: int) -> int:
    """Neurons kept per target out of `count`: ⌈ρ·count⌉, so any ρ > 0 selects at least one."""
    return min(count, math.ceil(rho * count - 1e-9)) if rho > 0 else 0


class ResetSet:
    """Union of selected neurons, one boolean mask per module."""

    def __init__(self, neurons: list[Neurons], sizes: dict[Neurons, int], rho: float, ranking: str = "global"):
        if ranking not in RANKINGS:
            raise RejuvError(f"ranking must be one of {', '.join(RANKINGS)}, got {ranking!r}")
        self.neurons = neurons
        self.sizes = sizes
        self.rho = check_rho(rho)
        self.ranking = ranking
        self.masks = {n: torch.zeros(sizes[n], dtype=torch.bool) for n in neurons}
        self.targets = 0

    @property
    def total(self) -> int:
        return sum(self.sizes.values())

    @property
    def selected(self) -> int:
        return sum(int(m.sum()) for m in self.masks.values())

    def add(self, scores: dict[Neurons, torch.Tensor]) -> None:
        """Add the top neurons of each target; `scores[n]` is [targets, size of n]."""
        if self.ranking == "global":
            flat = torch.cat([scores[n] for n in self.neurons], dim=1)
            k = budget(self.rho, flat.shape[1])
            if k == 0:
                self.targets += flat.shape[0]
                return
            top = torch.topk(flat, k, dim=1)
            chosen = torch.zeros_like(flat, dtype=torch.bool)
            chosen.scatter_(1, top.indices, top.values > 0)
            start = 0
            for n in self.neurons:
                self.masks[n] |= chosen[:, start: start + self.sizes[n]].any(0)
                start += self.sizes[n]
            self.targets += flat.shape[0]
            return
        for n in self.neurons:
            s = scores[n]
            k = budget(self.rho, s.shape[1])
            if k == 0:
                continue
            top = torch.topk(s, k, dim=1)
            chosen = torch.zeros_like(s, dtype=torch.bool)
            chosen.scatter_(1, top.indices, top.values > 0)
            self.masks[n] |= chosen.any(0)
        self.targets += next(iter(scores.values())).shape[0]

    def indices(self) -> dict[Neurons, list[int]]:
        """Selected indices per module, modules with none left out."""
        out = {}
        for n in self.neurons:
            idx = torch.nonzero(self.masks[n]).flatten().tolist()
            if idx:
                out[n] = idx
        return out

    def by_module(self) -> dict[str, dict[str, int]]:
        return {f"{n.layer}.{n.kind}": {"reset": int(self.masks[n].sum()), "total": self.sizes[n]}
                for n in self.neurons}
