"""Flags, ranking, plots and the self-contained HTML page of `rejuv diagnose`.

A checkpoint is flagged as over-trained when two or more warning signs fire,
or when its entropy alone is below the collapse level. The signs (each stated
in the report when it fires):
- entropy: mean teacher-forced entropy below 0.18 nats, or below half the
  highest among the checkpoints given;
- drift: relative drift from the base at least twice the smallest among them;
- spikiness: share of ‖Δ‖² in the top 0.1% of entries at least 1.5× the smallest;
- pass gap: pass@k − pass@1 at most half the largest among them (with --eval).
Relative signs need two or more checkpoints. The ranking orders checkpoints by
the mean of their ranks on entropy (high first), drift, spikiness (low first)
and pass gap (high first).
"""

from __future__ import annotations

import os
from pathlib import Path

from rejuv.diagnostics.outputs import COLLAPSE_NATS
from rejuv.errors import RejuvError
from rejuv.io.jsonl import strict_dumps
from rejuv.method.arch import NEURON_KINDS
from rejuv.options import OptionError
from rejuv.report.figures import figure_png, pyplot
from rejuv.report.html import render
from rejuv.report.stats import ranks


def assess(entries: list[dict]) -> None:
    """Add `signals`, `flagged` and `rank` to each checkpoint entry (in place)."""
    several = len(entries) > 1
    entropy = [e["outputs"]["mean_entropy"] for e in entries]
    drift = [e["params"]["model"]["rel"] or 0.0 for e in entries]
    spiky = [e["params"]["model"]["top_0.1pct_share"] for e in entries]
    gaps = [e["sampling"]["gap"] if e.get("sampling") else None for e in entries]
    for i, e in enumerate(entries):
        signals = {}
        if entropy[i] < COLLAPSE_NATS:
            signals["entropy"] = f"mean entropy {entropy[i]:.3f} nats is below the collapse level {COLLAPSE_NATS}"
        elif several and entropy[i] < 0.5 * max(entropy):
            signals["entropy"] = f"mean entropy {entropy[i]:.3f} nats is under half the highest ({max(entropy):.3f})"
        if several and min(drift) > 0 and drift[i] >= 2 * min(drift):
            signals["drift"] = f"relative drift {drift[i]:.4f} is {drift[i] / min(drift):.1f}× the smallest"
        if several and min(spiky) > 0 and spiky[i] >= 1.5 * min(spiky):
            signals["spikiness"] = (f"top-0.1% share of the drift {spiky[i]:.3f} is {spiky[i] / min(spiky):.1f}× "
                                    "the smallest")
        known_gaps = [g for g in gaps if g is not None]
        if several and gaps[i] is not None and max(known_gaps) > 0 and gaps[i] <= 0.5 * max(known_gaps):
            signals["pass_gap"] = f"pass@k − pass@1 = {gaps[i]:.3f} is at most half the largest ({max(known_gaps):.3f})"
        e["signals"] = signals
        e["flagged"] = len(signals) >= 2 or entropy[i] < COLLAPSE_NATS
    orders = [ranks([-x for x in entropy]), ranks(drift), ranks(spiky)]
    if all(g is not None for g in gaps):
        orders.append(ranks([-g for g in gaps]))
    score = [sum(o[i] for o in orders) / len(orders) for i in range(len(entries))]
    for position, i in enumerate(sorted(range(len(entries)), key=lambda i: (score[i], i)), start=1):
        entries[i]["rank"] = position


# -- plots -------------------------------------------------------------------------------------------


def plot_drift_heatmaps(entries: list[dict]) -> bytes:
    plt = pyplot()

    layers = sorted({int(layer) for e in entries for layer in e["params"]["by_layer"]})
    grids = []
    for e in entries:
        grid = [[(e["params"]["by_layer"].get(str(layer), {}).get(kind, {}).get("rel") or 0.0)
                 for kind in NEURON_KINDS] for layer in layers]
        grids.append(grid)
    vmax = max((v for g in grids for row in g for v in row), default=1.0) or 1.0
    fig, axes = plt.subplots(1, len(entries), figsize=(3.2 * len(entries) + 1, 0.28 * len(layers) + 2.2),
                             squeeze=False)
    for ax, e, grid in zip(axes[0], entries, grids, strict=True):
        image = ax.imshow(grid, aspect="auto", cmap="magma", vmin=0, vmax=vmax)
        ax.set_title(e["name"], fontsize=9)
        ax.set_xticks(range(len(NEURON_KINDS)), [k.replace("_proj", "") for k in NEURON_KINDS], fontsize=7,
                      rotation=45)
        ax.set_yticks(range(len(layers)), [str(x) for x in layers], fontsize=7)
        ax.set_ylabel("layer", fontsize=8)
    fig.colorbar(image, ax=axes[0].tolist(), label="‖Δ‖ / ‖θ_base‖")
    fig.suptitle("Relative drift from the base, per layer and module", fontsize=10, y=1.03)
    return figure_png(fig)


def plot_entropy_histograms(entries: list[dict], base_outputs: dict) -> bytes:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for label, outputs, style in [("base", base_outputs, "--")] + [(e["name"], e["outputs"], "-") for e in entries]:
        hist = outputs["entropy_histogram"]
        total = max(sum(hist["counts"]), 1)
        ax.stairs([c / total for c in hist["counts"]], hist["edges"], label=label, linestyle=style)
    ax.axvline(COLLAPSE_NATS, color="grey", linewidth=0.8)
    ax.set_xlabel("teacher-forced next-token entropy (nats)")
    ax.set_ylabel("share of response positions")
    ax.legend(fontsize=8)
    ax.set_title("Per-position entropy on the calibration set", fontsize=10)
    return figure_png(fig)


def plot_across_checkpoints(entries: list[dict]) -> bytes:
    plt = pyplot()

    panels = [("mean entropy (nats)", [e["outputs"]["mean_entropy"] for e in entries]),
              ("relative drift", [e["params"]["model"]["rel"] or 0.0 for e in entries]),
              ("top-0.1% share of drift", [e["params"]["model"]["top_0.1pct_share"] for e in entries])]
    if all(e.get("sampling") for e in entries):
        panels.append(("pass@k − pass@1", [e["sampling"]["gap"] for e in entries]))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.0), squeeze=False)
    names = [e["name"] for e in entries]
    for ax, (title, values) in zip(axes[0], panels, strict=True):
        ax.plot(range(len(values)), values, marker="o")
        ax.set_xticks(range(len(names)), names, rotation=45, fontsize=7, ha="right")
        ax.set_title(title, fontsize=9)
    fig.suptitle("Across checkpoints (in the order given)", fontsize=10, y=1.04)
    fig.tight_layout()
    return figure_png(fig)


def render_html(report: dict, images: dict[str, bytes]) -> str:
    return render("diagnose.html.j2", report=report, images=images)


def dumps(report: dict) -> str:
    return strict_dumps(report) + "\n"


SCHEMA = Path(__file__).parent / "report.schema.json"


def distinct_labels(checkpoints: list[str], names: list[str]) -> list[str]:
    """The checkpoints' labels (`checkpoint_labels`), one per checkpoint and all different, or an OptionError."""
    if names and len(names) != len(checkpoints):
        raise OptionError("names", f"{len(names)} names for {len(checkpoints)} checkpoints", also=("checkpoints",))
    labels = checkpoint_labels(checkpoints, names)
    if len(set(labels)) < len(labels):
        raise OptionError("names", f"checkpoint names must differ, got {labels}; pass --name once per checkpoint",
                          also=("checkpoints",))
    return labels


def checkpoint_labels(checkpoints: list[str], names: list[str] | None = None) -> list[str]:
    """The given names, else folder names (with the parent folder when two would collide)."""
    if names:
        if len(names) != len(checkpoints):
            raise RejuvError(f"{len(names)} names for {len(checkpoints)} checkpoints")
        return list(names)
    labels = [Path(c).name for c in checkpoints]
    if len(set(labels)) < len(labels):
        labels = [os.path.join(Path(c).parent.name, Path(c).name) for c in checkpoints]
    return labels
