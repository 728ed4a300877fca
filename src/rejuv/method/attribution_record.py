"""`attribution.json`: one attribution pass as `rejuv apply` keeps it, so that another α, or another ρ of
its grid, needs no second pass (`--reuse-attribution`).

It holds the targets and, for every ρ of the grid, the reset plan (per tensor: the axis and the indices
that take base values). Read back, it is untrusted input: every target must name a calibration sample, a
response position of it and a token of the vocabulary; every plan entry a tensor the model has, on the
axis its neurons lie along, with distinct indices inside that axis (a negative index is refused, never
counted from the end); a reader's bias must be reset where its weight is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rejuv.io.records import Checked
from rejuv.method.arch import ArchAdapter, Neurons

TARGET_TOKENS = ("gold", "argmax")  # the token whose logit a target attributes: the data's, or the model's top-1


@dataclass(frozen=True)
class Target:
    sample: int  # index into the calibration samples
    position: int  # input position whose next-token logit is attributed
    token: int  # y*: the token whose logit is attributed
    gap: float  # |H_S − H_B| at that position


@dataclass
class Attribution:
    """One attribution pass: the targets, every grid ρ's reset, the DLA reconstruction errors."""

    targets: list[Target]
    resets: dict[float, dict[str, dict]]  # ρ → the reset of every tensor it touches (axis, indices)
    errors: list[float]

    def record(self, header: dict) -> dict:
        """The JSON record: `header` (what it was made from) and the pass's results."""
        return {**header, "targets": [[t.sample, t.position, t.token, t.gap] for t in self.targets],
                "dla_reconstruction_error": self.errors,
                "grid": {f"{rho:g}": plan for rho, plan in sorted(self.resets.items())}}


def reset_layout(adapter: ArchAdapter, sizes: dict[Neurons, int], tensor_names: set[str]) -> dict[str, tuple]:
    """Every tensor a reset may touch: name → (axis, neurons along it, the weight it goes with)."""
    layout = {}
    for n, size in sizes.items():
        # a fused projection's kinds share the tensor: its neurons along the axis run to the last span's end
        along = max(n.offset + size, layout.get(n.weight, (0, 0))[1])
        layout[n.weight] = (n.axis, along, n.weight)
        if n.axis == 0 and n.bias in tensor_names:
            layout[n.bias] = (0, along, n.weight)
    return layout


def check_reset_plan(plan: Any, layout: dict[str, tuple], checked: Checked, where: str) -> dict[str, dict]:
    """A per-tensor reset plan read back, checked against the model's tensors (see the module text)."""
    plan = checked.of(plan, "an object", where)
    for name, entry in plan.items():
        place = f"{where}[{name!r}]"
        if name not in layout:
            checked.fail(place, "no tensor of the model that a reset may touch has this name")
        axis, size, weight = layout[name]
        entry = checked.of(entry, "an object", place)
        if checked.get(entry, "axis", "an integer", place) != axis:
            checked.fail(f"{place}['axis']", f"{entry['axis']} is not the axis its neurons lie along ({axis})")
        indices = checked.get(entry, "indices", "a list", place)
        for i, index in enumerate(indices):
            checked.index(index, size, f"{place}['indices'][{i}]")
        if len(set(indices)) != len(indices):
            checked.fail(f"{place}['indices']", "an index appears twice")
        if name != weight and plan.get(weight, {}).get("indices") != indices:
            checked.fail(place, f"a bias must be reset where its weight {weight} is")
    for name, (_, _, weight) in layout.items():
        if name != weight and weight in plan and name not in plan:
            checked.fail(f"{where}[{weight!r}]", f"its bias {name} is not reset with it")
    return plan


def parse_attribution(record: Any, checked: Checked, layout: dict[str, tuple], samples: list,
                      vocab_size: int) -> Attribution:
    """The content of an attribution record, checked against the model (`layout`, `vocab_size`) and the
    calibration samples it was made from."""
    record = checked.of(record, "an object", "")
    targets = []
    for i, row in enumerate(checked.get(record, "targets", "a list")):
        place = f"['targets'][{i}]"
        row = checked.of(row, "a list", place)
        if len(row) != 4:
            checked.fail(place, f"expected [sample, position, token, gap], got {len(row)} values")
        sample = checked.index(row[0], len(samples), place + "[0] (sample)")
        positions = samples[sample].predict_positions
        position = checked.of(row[1], "an integer", place + "[1] (position)")
        if position not in positions:
            checked.fail(place + "[1] (position)", f"{position} is not a response position of sample {sample} "
                         f"({positions.start}..{positions.stop - 1})")
        token = checked.index(row[2], vocab_size, place + "[2] (token)")
        targets.append((sample, position, token, checked.of(row[3], "a number", place + "[3] (gap)")))
    errors = [checked.of(e, "a number", f"['dla_reconstruction_error'][{i}]")
              for i, e in enumerate(checked.get(record, "dla_reconstruction_error", "a list"))]
    plans = {}
    for key, plan in checked.get(record, "grid", "an object").items():
        place = f"['grid'][{key!r}]"
        try:
            rho = float(key)
        except ValueError:
            checked.fail(place, "the key is not a number (rho)")
        if not 0.0 < rho < 1.0:
            checked.fail(place, f"rho {rho:g} is outside (0, 1)")
        plans[rho] = check_reset_plan(plan, layout, checked, place)
    return Attribution([Target(*t) for t in targets], plans, errors)
