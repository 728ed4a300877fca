"""The reset itself: which tensor entries take base values, and taking them.

Which neurons to reset is chosen in `selection` (from attribution scores); this
module turns that choice into per-tensor rows and columns and applies it to a
block of fused rows (numpy arrays, as the streamed fusion of `rejuv apply` has them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rejuv.errors import RejuvError
from rejuv.method.arch import Neurons

RANKINGS = ("global", "per-module")


def reset_entries(indices: dict[Neurons, list[int]], tensor_names: set[str]) -> dict[str, dict]:
    """Per checkpoint tensor: which axis and indices take base values.

    Readers' rows reset in the weight and in the bias (when the module has one);
    writers' columns reset in the weight only (a writer's bias is per output). The
    indices are the tensor's own: a kind inside a fused projection is offset by where
    its rows start, and the kinds sharing one tensor are merged.
    """
    plan: dict[str, dict] = {}
    for n, idx in indices.items():
        if n.weight not in tensor_names:
            raise RejuvError(f"tensor {n.weight} (layer {n.layer} {n.kind}) is not in the checkpoint")
        names = [n.weight] + ([n.bias] if n.axis == 0 and n.bias in tensor_names else [])
        for name in names:
            entry = plan.setdefault(name, {"axis": n.axis, "indices": []})
            entry["indices"] = sorted({*entry["indices"], *(n.offset + i for i in idx)})
    return plan


def random_like(plan: dict[str, dict], sizes: dict[Neurons, int], tensor_names: set[str], seed: int
                ) -> dict[str, dict]:
    """A control for the attribution: in every module (layer, expert, kind) as many neurons as `plan` resets
    there, drawn uniformly without replacement (numpy's generator, `seed`), as a plan of the same form."""
    import numpy as np

    rng = np.random.default_rng(seed)
    chosen = {}
    for n, size in sizes.items():  # the adapter's fixed order: the same seed draws the same set
        count = sum(1 for i in plan.get(n.weight, {}).get("indices", ()) if n.offset <= i < n.offset + size)
        if count:
            chosen[n] = sorted(int(i) for i in rng.choice(size, size=count, replace=False))
    return reset_entries(chosen, tensor_names)


def summarize(plan: dict[str, dict], sizes: dict[Neurons, int]) -> dict:
    """The size of a reset plan: neurons reset in all, per module kind, per layer and per module (layer, expert,
    kind), with totals.

    Computed from the per-tensor plan, so a plan read back from a file is summarized like a fresh one.
    """
    kinds: dict[str, dict] = {}
    layers: dict[str, dict] = {}
    modules: dict[str, dict] = {}
    for n, size in sizes.items():
        chosen = plan.get(n.weight, {}).get("indices", ())
        count = sum(1 for i in chosen if n.offset <= i < n.offset + size)
        modules[n.label] = {"reset": count, "total": size}
        for groups, key in ((kinds, n.kind), (layers, str(n.layer))):
            g = groups.setdefault(key, {"reset": 0, "total": 0})
            g["reset"] += count
            g["total"] += size
    for g in [*kinds.values(), *layers.values()]:
        g["ratio"] = g["reset"] / g["total"] if g["total"] else 0.0
    reset, total = sum(m["reset"] for m in modules.values()), sum(sizes.values())
    return {"neurons_reset": reset, "neurons_total": total, "effective_reset_ratio": reset / total if total else 0.0,
            "by_kind": kinds, "by_layer": layers, "by_module": modules}


def apply_reset(fused: np.ndarray, base: np.ndarray, axis: int, indices: Sequence[int] | np.ndarray
                ) -> np.ndarray:
    """Overwrite rows (axis 0) or columns (axis 1) of `fused` with `base` values, in place.

    The assignment casts base values to `fused`'s dtype (round to nearest even, as torch's `.to` does).
    """
    idx = np.asarray(indices, dtype=np.int64)
    if axis == 0:
        fused[idx] = base[idx]
    else:
        fused[:, idx] = base[:, idx]
    return fused


@dataclass(frozen=True)
class AccuracyCost:
    """What a reset may cost in teacher-forced calibration accuracy: no more than fusion itself cost (SFT's
    accuracy minus the fusion's, or nothing where fusion raised it), within the noise of the calibration set.

    The noise is the binomial standard error of the fusion's accuracy over the `tokens` response tokens,
    sqrt(a(1−a)/n), and never less than one token (1/n): a rule that turns on one token of a thousand is
    noise (tokens of one sample are not independent, so this is a floor on the real noise).
    """

    sft: float
    fused: float
    tokens: int

    @property
    def fusion_cost(self) -> float:
        return max(self.sft - self.fused, 0.0)

    @property
    def tolerance(self) -> float:
        return max(1.0 / self.tokens, math.sqrt(self.fused * (1.0 - self.fused) / self.tokens))

    @property
    def allowed(self) -> float:
        return self.fusion_cost + self.tolerance

    def exceeded_by(self, accuracy: float) -> bool:
        """Whether a reset that leaves `accuracy` costs more than allowed (1e-12: exact ties are within)."""
        return self.fused - accuracy > self.allowed + 1e-12

    def record(self) -> dict:
        return {"fusion_cost": self.fusion_cost, "tolerance": self.tolerance, "allowed": self.allowed,
                "tokens": self.tokens, "rule": "fusion's cost + max(1/tokens, sqrt(a(1-a)/tokens)), a = the fusion's "
                "teacher-forced accuracy"}


def auto_rho(grid: list[dict], cost: AccuracyCost, max_share: float) -> tuple[float, str]:
    """`rho: auto`: the largest grid ρ whose reset covers at most `max_share` of the neurons and costs no more
    calibration accuracy than allowed (`AccuracyCost`); 0 when none qualifies (the output is the fusion)."""
    allowed = [g for g in grid if g["effective_reset_ratio"] <= max_share
               and not cost.exceeded_by(g["calibration_accuracy"])]
    rule = (f"the largest rho of the grid whose reset covers at most {max_share:.1%} of the neurons and costs no "
            f"more calibration accuracy than fusion did ({cost.fusion_cost:.4f}) plus the calibration set's noise "
            f"({cost.tolerance:.4f} over {cost.tokens} tokens)")
    if not allowed:
        return 0.0, f"{rule}: none qualifies, so nothing is reset"
    return allowed[-1]["rho"], rule


def reset_warnings(ratio: float, max_share: float, rho: float, targets: int, by_kind: dict[str, dict],
                   cost: AccuracyCost | None, accuracy: float | None) -> list[str]:
    """What a user should know before handing a reset model on: a union far beyond ρ, a reset that costs more
    calibration accuracy than fusion did beyond the calibration set's noise."""
    found = []
    if ratio > max_share:
        kinds = sorted(by_kind.items(), key=lambda kv: -kv[1]["ratio"])[:3]
        found.append(f"the reset covers {ratio:.1%} of the model's neurons, above max_reset_share {max_share:.1%}: "
                     f"rho {rho:g} is a share per target, and the union over {targets} targets is "
                     f"{ratio / rho:.0f}x rho (most in " + ", ".join(f"{k} {v['ratio']:.0%}" for k, v in kinds)
                     + "); lower --rho, --targets-per-sample or --max-samples to reset less (or --rho auto)")
    if cost is not None and accuracy is not None and cost.exceeded_by(accuracy):
        found.append(f"the reset removed more calibration accuracy than fusion did, beyond the calibration set's "
                     f"noise (teacher-forced top-1 accuracy: SFT {cost.sft:.3f}, fused {cost.fused:.3f}, rejuvenated "
                     f"{accuracy:.3f}; noise {cost.tolerance:.4f} over {cost.tokens} tokens); check the output before "
                     "RL or lower --rho")
    return found
