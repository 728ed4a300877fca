"""What an update changed: checkpoints (RL results) against the one they started from, streamed per tensor.

- Size: ‖θ − θ_start‖ and its ratio to ‖θ_start‖, per module kind, per layer and for the model.
- Sparsity: the share of entries that changed, exactly in the stored dtype (bit for bit) and by more than
  an absolute `tolerance`, per module kind, per layer and for the model. Storage decides the exact figure:
  a bf16 weight near 0.02 moves in steps of ~1.2e-4, so a smaller update is rounded away when saved (the
  surveys' 5-30% are measured on bf16 checkpoints), hence the stored dtypes go into the result.
- Rank, per matrix of the layers (q/k/v/o/gate/up/down; embeddings move only in the rows of the tokens
  seen): the stable rank ‖ΔW‖_F²/σ_max², and the energy rank, the fewest singular directions that hold
  `energy` of ‖ΔW‖_F². Exact singular values when the short side is at most `EXACT_SVD_DIM`; above, a
  randomized SVD of `sketch` directions (two power iterations) gives σ_max and the energy rank when the
  sketch holds that much energy, else the sketch size as a lower bound (`energy_rank_lower_bound`).
- Spike persistence (with the base): of each tensor's top 0.1% |θ_start − θ_base| entries (the spikes
  the start carries), the share the update left within `spike_fraction` of where the start put them,
  |θ − θ_start| ≤ f·|θ_start − θ_base|; pooled over tensors by count.
- Cross-seed overlap, for every pair of checkpoints: the Jaccard overlap |A∩B|/|A∪B| of the sets of
  entries each changed exactly, against two random sets of the same sizes in every tensor
  (E|A∩B| = Σ_tensors a·b/n; for sets drawn from the whole model instead it would be smaller still).

Memory: one tensor of the start, of each checkpoint and of the base at a time, elementwise work in chunks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import median

import torch

from rejuv.diagnostics.params import CHUNK, TOP_SHARE, layer_of, module_kind
from rejuv.errors import RejuvError
from rejuv.io.reader import Checkpoint, release_freed_memory

# A router is left out: it has too few rows (one per expert) for a rank to say much.
RANK_KINDS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "qkv_proj", "gate_up_proj",
              "expert_gate_proj", "expert_up_proj", "expert_down_proj")
EXACT_SVD_DIM = 1024
_INT_OF_SIZE = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


@dataclass
class Counts:
    numel: int = 0
    exact: int = 0
    above: int = 0
    bf16: int = 0
    update_sq: float = 0.0  # Σ (θ − θ_start)²
    start_sq: float = 0.0  # Σ θ_start²

    def add(self, other: Counts) -> None:
        self.numel += other.numel
        self.exact += other.exact
        self.above += other.above
        self.bf16 += other.bf16
        self.update_sq += other.update_sq
        self.start_sq += other.start_sq

    def summary(self) -> dict:
        n = max(self.numel, 1)
        return {"numel": self.numel, "changed_exact": self.exact / n, "changed_above_tolerance": self.above / n,
                "changed_bf16": self.bf16 / n,
                "l2": math.sqrt(self.update_sq),
                "rel": math.sqrt(self.update_sq / self.start_sq) if self.start_sq else None}


def changed_exactly(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Entries whose stored bits differ (−0.0 against 0.0 counts as a change; a NaN that stays is none);
    tensors of different dtypes are compared by value in float64."""
    if new.dtype == old.dtype and new.element_size() in _INT_OF_SIZE:
        as_int = _INT_OF_SIZE[new.element_size()]
        return new.view(as_int) != old.view(as_int)
    return new.double() != old.double()


def singular_energies(delta: torch.Tensor, sketch: int, seed: int) -> tuple[torch.Tensor, bool]:
    """Squared singular values of `delta` (descending, float64) and whether they are all of them.

    Exact up to `EXACT_SVD_DIM` on the short side, as the eigenvalues of the float64 Gram matrix (1.9× faster
    than an SVD of a 2048 × 512 matrix here, equal to 5e-15 of the largest); above, the `sketch` largest from
    a randomized range finder with two power iterations (Halko et al. 2011), seeded so it is reproducible.
    """
    if min(delta.shape) <= max(EXACT_SVD_DIM, sketch):
        x = delta.double()
        gram = x.T @ x if x.shape[0] >= x.shape[1] else x @ x.T
        return torch.linalg.eigvalsh(gram).flip(0).clamp_min(0), True
    tall = delta.float() if delta.shape[0] >= delta.shape[1] else delta.float().T
    g = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(tall @ torch.randn(tall.shape[1], sketch, generator=g, dtype=tall.dtype)).Q
    for _ in range(2):
        q = torch.linalg.qr(tall @ torch.linalg.qr(tall.T @ q).Q).Q
    return torch.linalg.svdvals((q.T @ tall).double()).pow(2), False


def rank_of(delta: torch.Tensor, energy: float, sketch: int, seed: int) -> dict:
    """Stable rank and energy rank of one update matrix (see the module docstring)."""
    total = float(delta.double().pow(2).sum())
    short = min(delta.shape)
    if total == 0:
        return {"shape": list(delta.shape), "stable_rank": None, "energy_rank": 0, "energy_rank_lower_bound": False,
                "energy_rank_share": 0.0}
    energies, complete = singular_energies(delta, sketch, seed)
    captured = energies.cumsum(0) / total
    reached = torch.nonzero(captured >= energy - 1e-12)
    if len(reached):
        rank, lower = int(reached[0]) + 1, False
    else:  # the sketch holds less than `energy`: the rank is beyond it
        rank, lower = len(energies), True
    return {"shape": list(delta.shape), "stable_rank": total / float(energies[0]), "energy_rank": rank,
            "energy_rank_lower_bound": lower and not complete, "energy_rank_share": rank / short}


def update_statistics(start: Checkpoint, checkpoints: list[Checkpoint], names: list[str],
                      base: Checkpoint | None = None, tolerance: float = 1e-5, energy: float = 0.9,
                      spike_fraction: float = 0.1, sketch: int = 256, seed: int = 0, progress=None) -> dict:
    """Sparsity, rank and spike persistence of each checkpoint's update from `start`, and the overlap of every
    pair's updated sets, over `names` (tensors all of them have, with the same shapes)."""
    n_ckpt = len(checkpoints)
    kinds = [dict() for _ in range(n_ckpt)]
    layers = [dict() for _ in range(n_ckpt)]
    model = [Counts() for _ in range(n_ckpt)]
    matrices: list[dict[str, dict]] = [{} for _ in range(n_ckpt)]
    spikes = [[0, 0] for _ in range(n_ckpt)]  # spikes seen, spikes kept
    pairs = {(i, j): [0, 0, 0.0] for i in range(n_ckpt) for j in range(i + 1, n_ckpt)}  # ∩, ∪, E|∩| at random
    for name in names:
        old = start.read(name)
        news = [c.read(name) for c in checkpoints]
        for which, tensor in ((start, old), *zip(checkpoints, news, strict=True)):
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise RejuvError(f"{which.path}: tensor {name} holds NaN or Inf values; its update cannot be measured")
        counts = _changed(old, news, tolerance, pairs)
        kind, layer = module_kind(name), layer_of(name)
        for k in range(n_ckpt):
            model[k].add(counts[k])
            kinds[k].setdefault(kind, Counts()).add(counts[k])
            if layer is not None:
                layers[k].setdefault(layer, {}).setdefault(kind, Counts()).add(counts[k])
        if kind in RANK_KINDS and old.dim() == 2:
            for k, new in enumerate(news):
                matrices[k][name] = rank_of(new.float() - old.float(), energy, sketch, seed)
        if base is not None:
            _count_spikes(base.read(name).float(), old.float(), [t.float() for t in news], spike_fraction, spikes)
        del old, news
        release_freed_memory(start.tensors[name].nbytes * (n_ckpt + 2))
        if progress is not None:
            progress.update(1)

    results = [{
        "model": model[k].summary(),
        "by_kind": {kind: c.summary() for kind, c in sorted(kinds[k].items())},
        "by_layer": {str(layer): {kind: c.summary() for kind, c in sorted(g.items())}
                     for layer, g in sorted(layers[k].items())},
        "rank": _rank_summary(matrices[k]),
        "matrices": matrices[k],
        "spikes": None if base is None else {"spikes": spikes[k][0], "kept": spikes[k][1] / max(spikes[k][0], 1)},
    } for k in range(n_ckpt)]
    overlap = _overlap(pairs, model)
    return {
        "start": str(start.path), "base": str(base.path) if base is not None else None,
        "stored_dtypes": {"start": _dtypes(start, names), "checkpoints": [_dtypes(c, names) for c in checkpoints]},
        "tolerance": tolerance, "energy": energy, "spike_fraction": spike_fraction, "top_share": TOP_SHARE,
        "sketch": sketch, "checkpoints": results, "overlap": overlap,
    }


def _changed(old: torch.Tensor, news: list[torch.Tensor], tolerance: float, pairs: dict) -> list[Counts]:
    """One tensor, in chunks: the entries each checkpoint changed (bit for bit, by more than `tolerance`, and in
    a bf16 copy) and the squared sizes of update and start; each pair's shared and joint changed entries, and
    the share of them two random sets of the same sizes would share, are added to `pairs`."""
    counts = [Counts(numel=old.numel()) for _ in news]
    flat_old, flat_news = old.flatten(), [t.flatten() for t in news]
    for lo in range(0, flat_old.numel(), CHUNK):
        o = flat_old[lo: lo + CHUNK]
        o64 = o.double()
        start_sq = float(torch.dot(o64, o64))
        masks = []
        for k, new in enumerate(flat_news):
            n = new[lo: lo + CHUNK]
            mask = changed_exactly(n, o)
            masks.append(mask)
            d = n.double() - o64
            counts[k].exact += int(mask.sum())
            counts[k].above += int((d.abs() > tolerance).sum())
            counts[k].bf16 += int(changed_exactly(n.bfloat16(), o.bfloat16()).sum())
            counts[k].update_sq += float(torch.dot(d, d))
            counts[k].start_sq += start_sq
        for (i, j), acc in pairs.items():
            acc[0] += int((masks[i] & masks[j]).sum())
            acc[1] += int((masks[i] | masks[j]).sum())
    for (i, j), acc in pairs.items():
        acc[2] += counts[i].exact * counts[j].exact / max(old.numel(), 1)
    return counts


def _overlap(pairs: dict, model: list[Counts]) -> list[dict]:
    """Every pair's Jaccard index of changed entries, beside that of random sets of the same sizes."""
    overlap = []
    for (i, j), (inter, union, expected) in pairs.items():
        a, b = model[i].exact, model[j].exact
        random_union = a + b - expected
        overlap.append({"a": i, "b": j, "jaccard": inter / union if union else None,
                        "random_jaccard": expected / random_union if random_union else None})
    return overlap


def _count_spikes(base: torch.Tensor, start: torch.Tensor, news: list[torch.Tensor], fraction: float,
                  acc: list[list[int]]) -> None:
    drift = (start - base).flatten().abs()
    k = math.ceil(TOP_SHARE * drift.numel())
    top = torch.topk(drift, k)
    spikes = top.indices[top.values > 0]  # an entry the start did not move is no spike
    size = drift[spikes]
    for c, new in enumerate(news):
        moved = (new.flatten()[spikes] - start.flatten()[spikes]).abs()
        acc[c][0] += len(spikes)
        acc[c][1] += int((moved <= fraction * size).sum())


def _rank_summary(matrices: dict[str, dict]) -> dict:
    """Per module kind and over all matrices: the median stable rank and energy rank as shares of the short
    side, and how many energy ranks are only lower bounds."""
    groups: dict[str, list[dict]] = {}
    for name, m in matrices.items():
        for key in (module_kind(name), "all"):
            groups.setdefault(key, []).append(m)
    out = {}
    for key, ms in sorted(groups.items()):
        moved = [m for m in ms if m["stable_rank"] is not None]
        out[key] = {
            "matrices": len(ms), "unchanged": len(ms) - len(moved),
            "median_stable_rank_share": median([m["stable_rank"] / min(m["shape"]) for m in moved]) if moved else None,
            "median_energy_rank_share": median([m["energy_rank_share"] for m in moved]) if moved else None,
            "lower_bounds": sum(m["energy_rank_lower_bound"] for m in ms),
        }
    return out


def _dtypes(ckpt: Checkpoint, names: list[str]) -> dict[str, int]:
    """How many of `names` each stored dtype holds."""
    out: dict[str, int] = {}
    for name in names:
        dtype = ckpt.tensors[name].dtype
        out[dtype] = out.get(dtype, 0) + 1
    return dict(sorted(out.items()))
