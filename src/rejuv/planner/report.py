"""Plots and the self-contained HTML page of `rejuv plan`."""

from __future__ import annotations

from pathlib import Path

from rejuv.report.figures import figure_png, pyplot
from rejuv.report.html import render

SIGNAL_LABELS = {"entropy": "mean entropy (nats)", "top1_mass": "top-1 mass", "nll": "held-out NLL",
                 "drift": "relative drift", "pass@1": "pass@1", "pass_gap": "pass@k − pass@1",
                 "dead_groups": "dead GRPO groups (forecast)", "pass@group": "pass@g (RL prompts, RL temperature)",
                 "coverage": "pass@K (RL prompts, RL temperature)", "coverage_ratio": "pass@K / the base's",
                 "diversity": "1 − self-BLEU (K samples)"}


def plot_probes(plan: dict) -> bytes:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    curves = [(c["name"], c["probe"]["rewards"]) for c in plan["checkpoints"]]
    curves += [(c["label"], c["probe"]["rewards"]) for c in plan["search"]["candidates"] if c.get("probe")]
    for name, rewards in curves:
        ax.plot(range(1, len(rewards) + 1), rewards, marker=".", label=name)
    ax.set_xlabel("probe step")
    ax.set_ylabel("mean reward")
    ax.set_title("RL probes (same settings for every candidate)")
    ax.legend(fontsize=7)
    return figure_png(fig)


def plot_signals(plan: dict) -> bytes:
    plt = pyplot()
    keys = list(SIGNAL_LABELS)
    fig, axes = plt.subplots(3, 4, figsize=(13, 8.4))
    outcome = [c["probe"]["reward_end"] for c in plan["checkpoints"]]
    for ax in axes.flat[len(keys):]:
        ax.set_visible(False)
    for ax, key in zip(axes.flat, keys, strict=False):
        xs = [c["signals"].get(key) for c in plan["checkpoints"]]
        pts = [(x, y, c["name"]) for x, y, c in zip(xs, outcome, plan["checkpoints"], strict=True) if x is not None]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts])
        for x, y, name in pts:
            ax.annotate(name, (x, y), fontsize=6)
        rho = plan["correlations_with_probe"].get(key)
        ax.set_title(f"{SIGNAL_LABELS[key]}: Spearman {'–' if rho is None else f'{rho:+.2f}'}", fontsize=9)
        ax.set_ylabel("probe outcome", fontsize=8)
    fig.tight_layout()
    return figure_png(fig)


def plot_search(plan: dict) -> bytes:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    cands = plan["search"]["candidates"]
    for rho in sorted({c["rho"] for c in cands}):
        row = sorted((c for c in cands if c["rho"] == rho), key=lambda c: c["alpha"])
        alphas = [c["alpha"] for c in row]
        axes[0].plot(alphas, [c["entropy_recovered"] for c in row], marker="o", label=f"entropy recovered, ρ={rho:g}")
        axes[0].plot(alphas, [c["accuracy_kept"] for c in row], marker="s", linestyle="--",
                     label=f"accuracy kept, ρ={rho:g}")
        axes[1].plot(alphas, [c["score"] for c in row], marker="o", label=f"ρ={rho:g}")
    axes[0].set_xlabel("α")
    axes[0].legend(fontsize=7)
    axes[0].set_title(f"search on {plan['search']['on']}", fontsize=9)
    axes[1].set_xlabel("α")
    axes[1].set_ylabel("search score")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return figure_png(fig)


def write_plots(plan: dict, folder: Path) -> dict[str, bytes]:
    plots = {"probes": plot_probes(plan), "signals": plot_signals(plan)} if plan["probe"] else {}
    plots["search"] = plot_search(plan)
    for name, png in plots.items():
        (folder / f"plan_{name}.png").write_bytes(png)
    return plots


def render_html(plan: dict, plots: dict[str, bytes]) -> str:
    probe_keys = ("reward_start", "reward_end", "reward_end_se", "reward_slope", "grad_to_update", "entropy_slope")
    checkpoint_rows = [[c["name"] + (" (flagged)" if c["flagged"] else ""),
                        *[c["signals"].get(k) for k in SIGNAL_LABELS],
                        *[(c["probe"] or {}).get(k) for k in probe_keys]]
                       for c in plan["checkpoints"]]
    search_rows = [[c["label"], c["alpha"], c["rho"], c["entropy"], c["entropy_recovered"], c["pass@1"],
                    c["accuracy_kept"], c["score"], (c.get("probe") or {}).get("reward_end"),
                    (c.get("probe") or {}).get("reward_end_se")]
                   for c in plan["search"]["candidates"]]
    correlation_rows = [[SIGNAL_LABELS[k], v] for k, v in plan["correlations_with_probe"].items()]
    checkpoint_header = ["checkpoint", *SIGNAL_LABELS.values(), "probe reward start", "probe reward end", "± s.e.",
                         "reward slope", "grad / update", "entropy slope"]
    return render("plan.html.j2", plan=plan, images=plots, checkpoint_header=checkpoint_header,
                  checkpoint_rows=checkpoint_rows, search_rows=search_rows, correlation_rows=correlation_rows)
