"""The lab's report rendered: report.json, report.html (what a reader opens: where the numbers came from, then
the decisions), table.md (every table of the page in Markdown) and the plots, from the judged content
(`lab/judging.py`) of every seed's record (`lab/records.py`, which may come from another sitting). A preset
without claims (smoke) reports the numbers and states none."""

from __future__ import annotations

import statistics
from pathlib import Path

from rejuv.io.jsonl import strict_dumps
from rejuv.io.output import mark_written
from rejuv.lab.judging import CLAIM_HEADER, claim_rows, judge_report
from rejuv.lab.presets import Preset
from rejuv.lab.results import LABELS
from rejuv.report.figures import figure_png, pyplot
from rejuv.report.html import render
from rejuv.report.stats import format_mean_sd, mean_sd


def calibration_lines(per_seed: dict, arms: tuple[str, ...]) -> list[str]:
    """A markdown table of stated confidence, Brier and ECE for the arms whose samples state one."""
    stated = [a for a in arms if all((per_seed[s][a].get("calibration") or {}).get("after") for s in per_seed)]
    if not stated:
        return []
    lines = ["", "Calibration (samples that state a confidence; ID and OOD averaged; mean ± sd over seeds):", "",
             "| arm | stated before | Brier before | ECE before | stated after | Brier after | ECE after |",
             "|---|---|---|---|---|---|---|"]
    for arm in stated:
        cells = []
        for stage in ("before", "after"):
            for key, scale in (("stated", 100.0), ("brier", 1.0), ("ece", 1.0)):
                values = [(per_seed[s][arm]["calibration"].get(stage) or {}).get(key) for s in per_seed]
                known = [v for v in values if v is not None]
                cells.append(format_mean_sd(mean_sd(known), scale, 1 if scale > 1 else 3) if known else "–")
        lines.append(f"| {LABELS[arm]} | " + " | ".join(cells) + " |")
    return lines


def _fmt(cell: dict, scale: float = 100.0, digits: int = 1) -> str:
    return format_mean_sd(cell, scale, digits)


TABLE_HEADER = ["arm", "ID before", "OOD before", "overall before", "ID after", "OOD after", "overall after",
                "RL gain", "entropy (nats)", "rel. drift"]


def table_rows(table: dict, arms: tuple[str, ...]) -> list[list[str]]:
    """The cells of Table 2 in miniature, one row per arm (pass@1 in %, entropy and drift as measured)."""
    return [[LABELS[arm]]
            + [_fmt(table[arm][k]) for k in ("before_id", "before_ood", "before_overall", "after_id", "after_ood",
                                             "after_overall", "gain")]
            + [_fmt(table[arm]["entropy"], 1, 3), _fmt(table[arm]["drift_rel"], 1, 3)] for arm in arms]


def markdown_table(table: dict, arms: tuple[str, ...]) -> str:
    return "\n".join(markdown_rows(TABLE_HEADER, table_rows(table, arms)))


def per_seed_table(per_seed: dict, arms: tuple[str, ...], found: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Seed by seed: every arm's overall pass@1 before → after RL (%), and every claim's paired difference
    (points)."""
    paired = [c for c in found if c.get("differences")]
    header = ["seed", *(f"{LABELS[a]} before → after" for a in arms), *(f"Δ {c['measure']}" for c in paired)]
    rows = []
    for seed, row in per_seed.items():
        rows.append([seed, *(f"{100 * row[a]['before']['overall']:.1f} → {100 * row[a]['after']['overall']:.1f}"
                             for a in arms), *(f"{100 * c['differences'][seed]:+.1f}" for c in paired)])
    return header, rows


DEAD_HEADER = ["arm", "forecast before RL (mean ± sd)", "GRPO, first 10% of steps", "per seed: forecast / measured"]


def dead_group_rows(found: dict) -> list[list[str]]:
    return [[LABELS[r["arm"]], format_mean_sd(r["forecast"], 100, 0) + "%", format_mean_sd(r["measured"], 100, 0) + "%",
             "; ".join(f"{s}: {'–' if f is None else f'{100 * f:.0f}'} / {'–' if m is None else f'{100 * m:.0f}'}"
                       for s, (f, m) in r["per_seed"].items())] for r in found["rows"]]


RULES_HEADER = ["rule", "how it picks", "shortfall (points, mean ± sd)", "best start picked", "Spearman with full RL",
                "picks per seed"]


def planner_rows(group: dict | None) -> list[list[str]]:
    """The planner's recommendation and the field's rules side by side over one group of seeds."""
    if not group:
        return []
    return [[r["rule"], r["how"], format_mean_sd(r["shortfall"], 100), _best_picked(r),
             format_mean_sd(r["spearman"], 1, 2, signed=True),
             ", ".join(f"{s}: {p or '–'}" for s, p in r["picks"].items())] for r in group.get("rules", [])]


def _best_picked(row: dict) -> str:
    """On how many seeds the rule picked the best start: of those where its pick is known (a rule whose signal a
    seed's record lacks, or a pick no full RL ran from, is unknown there)."""
    known, seeds = row["seeds_known"], len(row["picks"])
    if not known:
        return "–"
    return f"{row['best_picked']} of {known}" + ("" if known == seeds else f" known ({seeds} seeds)")


VERSUS_HEADER = ["rule", "seeds known", "shortfall (points, mean ± sd)", "best start picked",
                 "rule − planner, paired by seed (points, mean ± sd)", "95% interval",
                 "decision on 'the rule falls further short than the planner' (one-sided 5%, 2-point floor)",
                 "seeds: planner ahead / rule ahead"]


def versus_planner_rows(every: dict | None) -> list[list[str]]:
    """Every seed: each rule's shortfall, and its paired difference from the planner's with the decision."""
    rows = []
    for r in (every or {}).get("rules", [])[1:]:
        v = r["versus_planner"]
        paired = ["–"] * 4 if v is None else [
            format_mean_sd(v["value"], 100, signed=True),
            "–" if v["interval"] is None else f"{100 * v['interval'][0]:+.1f} to {100 * v['interval'][1]:+.1f}",
            v["verdict"], f"{v['seeds_ahead']} / {v['rule_ahead']}"]
        rows.append([r["rule"], f"{r['seeds_known']} of {len(r['picks'])}", format_mean_sd(r["shortfall"], 100),
                     _best_picked(r), *paired])
    return rows


RECORDS_HEADER = ["seed", "record", "compute (min)", "written by", "CPU numerics"]


def records_rows(records: dict) -> list[list[str]]:
    def numerics(found: dict | None) -> str:
        return "–" if not found else f"{found.get('threads', '?')} threads, {found.get('cpu_capability', '?')}"

    return [[seed, r["from"], f"{r['seconds'] / 60:.1f}", r["written_by"]["commit"] or r["written_by"]["rejuv"] or "–",
             numerics(r.get("numerics"))] for seed, r in records.items()]


def markdown_rows(header: list[str], rows: list[list[str]]) -> list[str]:
    """A table as Markdown lines (table.md carries every table of the page)."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *["| " + " | ".join(r) + " |" for r in rows]]


def _plots(per_seed: dict, arms: tuple[str, ...]) -> dict[str, bytes]:
    plt = pyplot()

    def mean_curve(arm: str, key: str) -> list[float]:
        curves = [per_seed[s][arm]["rl"][key] for s in per_seed]
        length = min(len(c) for c in curves)
        return [statistics.fmean(float(c[i] or 0.0) for c in curves) for i in range(length)]

    # a window of a 25th of the run, so that 500 noisy steps read as a curve
    width = max(5, min(len(per_seed[s][a]["rl"]["reward"]) for s in per_seed for a in arms) // 25)

    def smooth(values: list[float]) -> list[float]:
        return [statistics.fmean(values[max(0, i - width + 1): i + 1]) for i in range(len(values))]

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    for arm in arms:
        for ax, key in zip(axes, ("reward", "grad_norm", "update_l2"), strict=True):
            values = mean_curve(arm, key)
            ax.plot(range(1, len(values) + 1), smooth(values) if key == "reward" else values, label=LABELS[arm])
    for ax, title in zip(axes, (f"mean reward (moving average of {width} steps)", "gradient norm (pre-clip)",
                                "update size ‖θ_t − θ_t−1‖"), strict=True):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("GRPO step")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"GRPO from each arm (mean over {len(per_seed)} seed(s))", fontsize=10)
    fig.tight_layout()
    images = {"rl_curves": figure_png(fig, dpi=100, tight=False)}

    fig, ax = plt.subplots(figsize=(8, 3.6))
    x = range(len(arms))
    for offset, stage in ((-0.2, "before"), (0.2, "after")):
        values = [statistics.fmean(per_seed[s][a][stage]["overall"] for s in per_seed) * 100 for a in arms]
        ax.bar([i + offset for i in x], values, width=0.4, label=f"{stage} RL")
    ax.set_xticks(list(x), [LABELS[a] for a in arms], rotation=20, fontsize=8, ha="right")
    ax.set_ylabel("overall pass@1 (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    images["before_after"] = figure_png(fig, dpi=100, tight=False)
    return images


BOTH_WAYS_HEADER = ["claim", "committed records: decision", "95% interval", "with this machine's run: decision",
                    "95% interval"]


def found_table(found: list[dict], provenance: dict) -> tuple[list[str], list[list[str]]]:
    """The premise and the claims in one table for the report's first screen: decision, mean ± sd and 95%
    interval over the seeds, and with a reproduced seed, the decision and interval with this machine's run."""
    rows = [[r[0], r[1], r[2], r[3]] for r in claim_rows(found)]
    header = ["claim", "decision", "mean ± sd", "95% interval"]
    both = provenance.get("claims_both_ways")
    if both:
        seeds = ", ".join(map(str, sorted(int(s) for s in provenance["reproduction"])))
        header += [f"with this machine's seed {seeds}", "95% interval"]
        rows = [[*row, b["here"]["decision"], b["here"]["interval"]] for row, b in zip(rows, both, strict=True)]
    return header, rows


def both_ways_rows(provenance: dict) -> list[list[str]]:
    return [[c["claim"], c["committed"]["decision"], c["committed"]["interval"], c["here"]["decision"],
             c["here"]["interval"]] for c in provenance.get("claims_both_ways", [])]


def write_report(root: Path, preset: Preset, arms: tuple[str, ...], preset_name: str, seconds: float,
                 numerics: dict, records: dict[int, dict], sources: dict[int, str], ran: list[int] | None = None,
                 reproduced: dict | None = None, elsewhere: dict | None = None,
                 planner_records: dict | None = None) -> dict:
    """The report over every seed's record, judged (`lab/judging.judge_report`, whose arguments these are) and
    written into `root`: report.json, the plots, table.md and report.html, listed in the demo's marker."""
    report = judge_report(root, preset, arms, preset_name, seconds, numerics, records, sources, ran, reproduced,
                          elsewhere, planner_records)
    (root / "report.json").write_text(strict_dumps(report) + "\n")
    images = _plots(report["per_seed"], arms)
    for name, png in images.items():
        (root / f"{name}.png").write_bytes(png)
    (root / "table.md").write_text("\n".join(_markdown(report, arms)) + "\n")
    (root / "report.html").write_text(_page(report, preset, preset_name, arms, seconds, images))
    mark_written(root, "demo", [root / name for name in ("report.json", "table.md", "report.html",
                                                          *(f"{image}.png" for image in images))])
    return report


def _markdown(report: dict, arms: tuple[str, ...]) -> list[str]:
    """table.md: every table of the page, in Markdown, in the page's order."""
    provenance, found = report["provenance"], report["premise"] + report["claims"]
    md = ["Where these numbers come from:", *[f"- {line}" for line in provenance["lines"]], ""]
    if found:
        md += [*markdown_rows(*found_table(found, provenance)), ""]
    md += [f"- {line}" for line in provenance["details"]]
    md += [markdown_table(report["table"], arms), "", "Per seed (overall pass@1 %; each claim's paired difference, "
           "points):", *markdown_rows(*per_seed_table(report["per_seed"], arms, found)),
           *calibration_lines(report["per_seed"], arms)]
    if found:
        md += ["", *markdown_rows(CLAIM_HEADER, claim_rows(found)), ""]
        md += [f"- {c['text']}" for c in found]
    updates = report["rl_updates"]
    if updates["lines"]:
        md += ["", "What GRPO changed (from each arm's start):", *[f"- {t}" for t in updates["lines"]],
               *[f"- {c['text']}" for c in updates["claims"]]]
    dead = report["dead_groups"]
    if dead["rows"]:
        md += ["", "Dead GRPO groups, forecast before RL against GRPO's first 10% of steps (%):",
               *markdown_rows(DEAD_HEADER, dead_group_rows(dead))]
    planner = report["planner"]
    if planner is not None:
        md += ["", "Planner (rejuv plan) against full RL:", *[f"- {t}" for t in planner["texts"]]]
        for label in ("development", "test"):
            if planner.get(label):
                md += ["", f"Rules side by side, {label} seeds:",
                       *markdown_rows(RULES_HEADER, planner_rows(planner[label]))]
        if planner.get("all_seeds"):
            md += ["", f"Every seed ({len(planner['all_seeds']['seeds'])}): each rule against the planner, paired by "
                   "seed:", *markdown_rows(VERSUS_HEADER, versus_planner_rows(planner["all_seeds"]))]
    md += ["", "Where each seed's numbers come from:", *markdown_rows(RECORDS_HEADER, records_rows(report["records"]))]
    return md


def _page(report: dict, p: Preset, name: str, arms: tuple[str, ...], seconds: float, images: dict) -> str:
    table, per_seed = report["table"], report["per_seed"]
    rl_length_lines = [f"{LABELS[a]}: flattened on {v['flattened_seeds']} of {v['seeds']} seeds (reward change over "
                       f"the last fifth {format_mean_sd(v['last_change'], 1, 3, signed=True)})"
                       for a, v in report["rl_length"].items()]
    seed_header, seed_rows = per_seed_table(per_seed, arms, report["premise"] + report["claims"])
    planner = report.get("planner") or {}
    found_header, found_rows = found_table(report["premise"] + report["claims"], report["provenance"])
    return render("lab.html.j2", report=report, p=p, name=name, seconds=seconds, images=images,
                  header=TABLE_HEADER, rows=table_rows(table, arms), seed_header=seed_header, seed_rows=seed_rows,
                  claim_header=CLAIM_HEADER, premise_rows=claim_rows(report["premise"]),
                  claim_rows=claim_rows(report["claims"]), dead_header=DEAD_HEADER,
                  dead_rows=dead_group_rows(report["dead_groups"]), rules_header=RULES_HEADER,
                  rules_development=planner_rows(planner.get("development")),
                  rules_test=planner_rows(planner.get("test")), versus_header=VERSUS_HEADER,
                  versus_rows=versus_planner_rows(planner.get("all_seeds")), rl_length_lines=rl_length_lines,
                  records_header=RECORDS_HEADER, records_rows=records_rows(report["records"]),
                  both_header=BOTH_WAYS_HEADER, both_rows=both_ways_rows(report["provenance"]),
                  found_header=found_header, found_rows=found_rows)
