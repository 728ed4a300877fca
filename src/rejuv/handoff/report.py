"""Plots and the self-contained HTML page of `rejuv plan`."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from rejuv.diagnostics.report import fmt
from rejuv.figures import figure_png, pyplot

SIGNAL_LABELS = {"entropy": "mean entropy (nats)", "top1_mass": "top-1 mass", "nll": "held-out NLL",
                 "drift": "relative drift", "pass@1": "pass@1", "pass_gap": "pass@k − pass@1"}


def _plt():
    plt = pyplot()

    return plt


def plot_probes(plan: dict) -> bytes:
    plt = _plt()
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
    plt = _plt()
    keys = list(SIGNAL_LABELS)
    fig, axes = plt.subplots(2, 3, figsize=(10, 5.6))
    outcome = [c["probe"]["reward_end"] for c in plan["checkpoints"]]
    for ax, key in zip(axes.flat, keys, strict=True):
        xs = [c["signals"][key] for c in plan["checkpoints"]]
        pts = [(x, y, c["name"]) for x, y, c in zip(xs, outcome, plan["checkpoints"], strict=True) if x is not None]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts])
        for x, y, name in pts:
            ax.annotate(name, (x, y), fontsize=6)
        rho = plan["correlations_with_probe"][key]
        ax.set_title(f"{SIGNAL_LABELS[key]}: Spearman {'–' if rho is None else f'{rho:+.2f}'}", fontsize=9)
        ax.set_ylabel("probe outcome", fontsize=8)
    fig.tight_layout()
    return figure_png(fig)


def plot_search(plan: dict) -> bytes:
    plt = _plt()
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
    plots = {"probes": plot_probes(plan), "signals": plot_signals(plan), "search": plot_search(plan)}
    for name, png in plots.items():
        (folder / f"plan_{name}.png").write_bytes(png)
    return plots


def _fmt(value) -> str:
    return fmt(value, digits=3)


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(plan: dict, plots: dict[str, bytes]) -> str:
    rec = plan["recommendation"]
    if rec["kind"] == "checkpoint":
        advice = f"Hand <b>{html.escape(rec['name'])}</b> to RL as it is."
    else:
        advice = (f"Hand <b>{html.escape(rec['from'])}</b> to RL after {rec['kind'].replace('fused', 'fusion')} "
                  f"with α = {rec['alpha']:g}, ρ = {rec['rho']:g}: <code>{html.escape(rec['command'])}</code>")
    checkpoint_rows = [[c["name"] + (" (flagged)" if c["flagged"] else ""), *[c["signals"][k] for k in SIGNAL_LABELS],
                        c["probe"]["reward_start"], c["probe"]["reward_end"], c["probe"]["reward_end_se"],
                        c["probe"]["reward_slope"], c["probe"]["grad_to_update"], c["probe"]["entropy_slope"]]
                       for c in plan["checkpoints"]]
    search_rows = [[c["label"], c["alpha"], c["rho"], c["entropy"], c["entropy_recovered"], c["pass@1"],
                    c["accuracy_kept"], c["score"], (c.get("probe") or {}).get("reward_end"),
                    (c.get("probe") or {}).get("reward_end_se")]
                   for c in plan["search"]["candidates"]]
    cautions = "".join(f'<p class="caution">{html.escape(w)}</p>' for w in plan["warnings"])
    corr_rows = [[SIGNAL_LABELS[k], v] for k, v in plan["correlations_with_probe"].items()]
    probe = plan["probe"]
    figures = "".join(
        f'<figure><img alt="{name}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        f"<figcaption>{name}</figcaption></figure>" for name, png in plots.items())
    n = len(plan["checkpoints"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rejuv plan</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; margin: 8px 0 20px; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
td:first-child {{ text-align: left; }}
.advice {{ background: #e8f4e8; padding: 10px; border-left: 4px solid #3a3; }}
.caution {{ background: #fdf3e1; padding: 10px; border-left: 4px solid #d90; }}
figure {{ display: inline-block; margin: 8px; }} img {{ max-width: 100%; border: 1px solid #eee; }}
</style></head>
<body data-images="{len(plots)}">
<h1>Hand-off plan</h1>
<p class="advice">{advice} Its probe ended at mean reward {_fmt(rec['probe_reward_end'])} (standard error
{_fmt(rec['probe_reward_end_se'])}); {html.escape(rec['uncertainty']['text'])}.</p>
{cautions}
<p>Diagnose: {html.escape(rec['diagnose']['text'])}.</p>
<p>Every candidate got the same GRPO probe: {probe['steps']} steps, {probe['prompts_per_step']} prompts ×
{probe['num_generations']} samples per step, learning rate {probe['learning_rate']:g}, reward
{html.escape(', '.join(probe['rewards']))}; outcome = {html.escape(probe['outcome'])}. Seed {plan['seed']}.
Evaluation: {_fmt(plan['evaluation']['problems'])} problems × {plan['evaluation']['samples']} samples.</p>
<h2>Checkpoints: cheap signals and probe</h2>
{_table(["checkpoint", *SIGNAL_LABELS.values(), "probe reward start", "probe reward end", "± s.e.",
         "reward slope", "grad / update", "entropy slope"], checkpoint_rows)}
<h2>Which cheap signal predicts the probe (Spearman over {n} checkpoints)</h2>
<p>Fewer than three checkpoints, or a constant signal, give no correlation (–).</p>
{_table(["signal", "Spearman with probe outcome"], corr_rows)}
<h2>α/ρ search on {html.escape(plan['search']['on'])}</h2>
{_table(["candidate", "α", "ρ", "entropy", "entropy recovered", "pass@1", "accuracy kept", "search score",
         "probe reward end", "± s.e."], search_rows)}
<h2>Plots</h2>{figures}
</body></html>
"""
