"""The reset itself: which tensor entries take base values, and taking them.

Which neurons to reset is chosen in `selection` (from attribution scores); this
module turns that choice into per-tensor rows and columns and applies it to a
block of fused rows (numpy arrays, as the streamed fusion of `rejuv apply` has them).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rejuv.arch import Neurons
from rejuv.errors import RejuvError

RANKINGS = ("global", "per-module")


def check_rho(rho: float) -> float:
    rho = float(rho)
    if not 0.0 <= rho < 1.0:
        raise RejuvError(f"rho must lie in [0, 1), got {rho}")
    return rho


def reset_entries(indices: dict[Neurons, list[int]], tensor_names: set[str]) -> dict[str, dict]:
    """Per checkpoint tensor: which axis and indices take base values.

    Readers' rows reset in the weight and in the bias (when the module has one);
    writers' columns reset in the weight only (a writer's bias is per output).
    """
    plan: dict[str, dict] = {}
    for n, idx in indices.items():
        if n.weight not in tensor_names:
            raise RejuvError(f"tensor {n.weight} (layer {n.layer} {n.kind}) is not in the checkpoint")
        plan[n.weight] = {"axis": n.axis, "indices": idx}
        if n.axis == 0 and n.bias in tensor_names:
            plan[n.bias] = {"axis": 0, "indices": idx}
    return plan


def summarize(plan: dict[str, dict], sizes: dict[Neurons, int]) -> dict:
    """The size of a reset plan: neurons reset in all, per module kind, per layer and per module, with totals.

    Computed from the per-tensor plan, so a plan read back from a file is summarized like a fresh one.
    """
    kinds: dict[str, dict] = {}
    layers: dict[str, dict] = {}
    modules: dict[str, dict] = {}
    for n, size in sizes.items():
        count = len(plan.get(n.weight, {}).get("indices", ()))
        modules[f"{n.layer}.{n.kind}"] = {"reset": count, "total": size}
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
