"""The lab's report: whether this world has the paper's premise, then each claim, judged over seeds.

Every number is read back from the files the steps wrote (eval.json, plasticity.jsonl, the diagnosis
report, rules.json, the Rejuvenation arm's manifest and attribution record: `seed_rows`, `seed_rules`),
by way of each seed's record (`lab/records.py`, which may come from another sitting), and every mean comes
with its spread over seeds and the seed count. Claims are judged by `lab/verdicts.py` (a margin, never a tie);
a preset without claims (smoke) reports the numbers and states none.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict
from pathlib import Path

from rejuv.diagnostics.groups import measured_dead_share
from rejuv.io.jsonl import read_jsonl, strict_dumps
from rejuv.io.output import mark_written
from rejuv.lab.plan_check import summarize_planner
from rejuv.lab.presets import Preset, diagnose_dir
from rejuv.lab.rules import RHOS, candidate
from rejuv.lab.task import TOKEN_CLASSES, char_classes
from rejuv.lab.verdicts import FLOOR, every_seed, judge
from rejuv.report.figures import figure_png, pyplot
from rejuv.report.html import render
from rejuv.report.stats import format_mean_sd, mean_sd, spearman
from rejuv.train.common import epoch_dir_name

LABELS = {"modsft": "ModSFT", "oversft": "OverSFT", "dft": "DFT", "oversft_fusion": "OverSFT + fusion",
          "oversft_rejuv": "OverSFT + Rejuvenation", "modsft_rejuv": "ModSFT + Rejuvenation",
          "chord_mu": "ModSFT → CHORD-µ", "chord_phi": "ModSFT → CHORD-φ", "pear": "PEAR SFT",
          "oversft_filter": "OverSFT, filtered RL", "conf": "Conf. SFT → RL",
          "conf_brier": "Conf. SFT → RL + Brier", "oversft_random": "OverSFT + random reset"}
FLAT = 0.1  # a reward curve has flattened when its last fifth is within this of the fifth before (±1 rewards)
RL_CURVES = ("reward", "grad_norm", "update_l2", "kl", "entropy")


def seed_rows(folder: Path, arms: tuple[str, ...]) -> dict:
    """One seed, per arm: pass@1 ID/OOD before and after RL, RL curves, entropy and drift before RL."""
    rows = {}
    diag = json.loads((diagnose_dir(folder, arms) / "report.json").read_text())
    by_name = {e["name"]: e for e in diag["checkpoints"]}
    for arm in arms:
        row = {}
        for stage in ("before", "after"):
            ev = json.loads((folder / f"eval_{stage}" / arm / "eval.json").read_text())
            scores = {r["benchmark"]: r["pass@1"] for r in ev["results"]}
            row.setdefault("calibration", {})[stage] = _calibration(ev["results"])
            row[stage] = {"id": scores["id"], "ood": scores["ood"], "overall": (scores["id"] + scores["ood"]) / 2}
        row["gain"] = row["after"]["overall"] - row["before"]["overall"]
        curve = read_jsonl(folder / "rl" / arm / "plasticity.jsonl", missing_ok=True)
        row["rl"] = {key: [r.get(key) for r in curve] for key in RL_CURVES}
        row["reward_change"], row["reward_last_change"] = _reward_changes(row["rl"]["reward"])
        row["update"] = _update_figures(folder / "updates" / f"{arm}.json")
        entry = by_name[arm]
        row["forecast"] = entry.get("groups")  # the dead-group forecast before RL, and what GRPO measured
        row["dead_measured"] = measured_dead_share(curve)
        row["entropy"] = entry["outputs"]["mean_entropy"]
        row["drift_rel"] = entry["params"]["model"]["rel"]
        row["flagged"] = entry["flagged"]
        rows[arm] = row
    return rows


def _update_figures(path: Path) -> dict | None:
    """What the arm's GRPO run changed (recipes/demo.write_update); None for a run made before it was measured."""
    if not path.exists():
        return None
    u = json.loads(path.read_text())["checkpoints"][0]
    rank = u["rank"].get("all", {})
    return {"rel": u["model"]["rel"], "changed_exact": u["model"]["changed_exact"],
            "changed_bf16": u["model"]["changed_bf16"], "energy_rank_share": rank.get("median_energy_rank_share"),
            "spikes_kept": u["spikes"]["kept"] if u["spikes"] else None}


def rl_updates(per_seed: dict, arms: tuple[str, ...], stated: bool) -> dict:
    """The RL update of every arm (size, sparsity, rank, spikes kept; mean ± sd over seeds), and when claims are
    stated, the paper's and the surveys' claims about it, each judged over seeds."""
    rows = list(per_seed.values())
    if not rows or any(r[a]["update"] is None for r in rows for a in arms):
        return {"lines": [], "claims": []}

    def values(arm: str, key: str) -> list[float]:
        return [r[arm]["update"][key] for r in rows if r[arm]["update"][key] is not None]

    lines = []
    for arm in arms:
        kept = values(arm, "spikes_kept")
        lines.append(f"{LABELS[arm]}: ‖Δ‖/‖θ_start‖ {format_mean_sd(mean_sd(values(arm, 'rel')), 1, 4)}; changed "
                     f"{format_mean_sd(mean_sd(values(arm, 'changed_exact')), 100, 1)}% of entries as stored, "
                     f"{format_mean_sd(mean_sd(values(arm, 'changed_bf16')), 100, 1)}% in a bf16 copy; median "
                     f"energy rank (90%) {format_mean_sd(mean_sd(values(arm, 'energy_rank_share')), 100, 0)}% of "
                     f"full; the start's spikes kept {format_mean_sd(mean_sd(kept), 100, 1) if kept else '–'}%")
    claims = []
    if stated and {"modsft", "oversft"} <= set(arms):
        log_ratio = [math.log(m / o) for m, o in zip(values("modsft", "rel"), values("oversft", "rel"), strict=True)
                     if m > 0 and o > 0]
        claims.append(_stated("RL moves OverSFT less than ModSFT (‖Δ‖/‖θ_start‖ of the RL update; paper, Fig. 3)",
                              judge(log_ratio, floor=math.log(1.1)), "log(ModSFT / OverSFT)", 1.0, ""))
        claims.append(_stated("RL leaves OverSFT's spikes (at least 90% of its top-0.1% |θ − θ_base| entries kept "
                              "within 10% of their size, every seed; paper, App. C)",
                              every_seed(values("oversft", "spikes_kept"), lambda v: v >= 0.9),
                              "spikes kept", 100.0, "%", ratio=True))
        for arm in ("modsft", "oversft"):
            claims.append(_stated(f"RL updates 5-30% of {LABELS[arm]}'s parameters in a bf16 copy (surveys), "
                                  "every seed",
                                  every_seed(values(arm, "changed_bf16"), lambda v: 0.05 <= v <= 0.30),
                                  "changed in bf16", 100.0, "%", ratio=True))
            claims.append(_stated(f"RL updates of {LABELS[arm]} are nearly full rank (median energy rank at least "
                                  f"half the short side, every seed; surveys)",
                                  every_seed(values(arm, "energy_rank_share"), lambda v: v >= 0.5),
                                  "median energy rank", 100.0, "% of full", ratio=True))
    return {"lines": lines, "claims": claims}


def dead_groups(per_seed: dict, arms: tuple[str, ...]) -> dict:
    """The dead-group forecast of every arm's start (diagnose --rl-data: a group of samples at the RL temperature
    on 64 RL prompts) against the share GRPO measured over the first tenth of its steps (TRL's
    frac_reward_zero_std, a few prompts a step), per arm and seed, and over every (arm, seed) pair: the mean
    signed and absolute error and Spearman's rank correlation."""
    pairs, rows = [], []
    for arm in arms:
        forecast = [(per_seed[s][arm].get("forecast") or {}).get("dead_share") for s in per_seed]
        measured = [per_seed[s][arm].get("dead_measured") for s in per_seed]
        rows.append({"arm": arm, "forecast": mean_sd(forecast), "measured": mean_sd(measured),
                     "per_seed": {s: [f, m] for s, f, m in zip(per_seed, forecast, measured, strict=True)}})
        pairs += [(f, m) for f, m in zip(forecast, measured, strict=True) if f is not None and m is not None]
    if not pairs:
        return {"rows": [], "pairs": 0, "error": None, "abs_error": None, "spearman": None}
    first = next(f for s in per_seed for a in arms if (f := per_seed[s][a].get("forecast")))
    return {"rows": rows, "pairs": len(pairs), "prompts": first["prompts"], "group_size": first["group_size"],
            "samples": first["samples_per_prompt"], "error": statistics.fmean(m - f for f, m in pairs),
            "abs_error": statistics.fmean(abs(m - f) for f, m in pairs),
            "spearman": spearman([f for f, _ in pairs], [m for _, m in pairs])}


def _reward_changes(rewards: list[float]) -> tuple[float | None, float | None]:
    """(last quarter − first quarter, last fifth − the fifth before) of the mean reward per step."""
    if not rewards:
        return None, None
    quarter, fifth = max(1, len(rewards) // 4), max(1, len(rewards) // 5)
    overall = statistics.fmean(rewards[-quarter:]) - statistics.fmean(rewards[:quarter])
    before = rewards[-2 * fifth: -fifth] or rewards[:fifth]
    return overall, statistics.fmean(rewards[-fifth:]) - statistics.fmean(before)


def _calibration(results: list[dict]) -> dict | None:
    """Stated share, Brier and ECE averaged over the benchmarks (ID and OOD, equal sizes); None if nothing stated."""
    cals = [r.get("calibration") for r in results]
    if not all(c and c["stated"] > 0 for c in cals):
        return None
    return {k: statistics.fmean(c[k] for c in cals) for k in ("stated", "brier", "ece")}


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


def summarize(per_seed: dict, arms: tuple[str, ...]) -> dict:
    table = {}
    for arm in arms:
        rows = [per_seed[s][arm] for s in per_seed]
        table[arm] = {
            **{f"{stage}_{split}": mean_sd([r[stage][split] for r in rows])
               for stage in ("before", "after") for split in ("id", "ood", "overall")},
            "gain": mean_sd([r["gain"] for r in rows]),
            "entropy": mean_sd([r["entropy"] for r in rows]),
            "drift_rel": mean_sd([r["drift_rel"] for r in rows]),
            "reward_change": mean_sd([r["reward_change"] for r in rows]),
        }
    return table


def _stated(name: str, result: dict, measure: str, scale: float = 100.0, unit: str = " points",
            ratio: bool = False) -> dict:
    """A verdict as a sentence. A difference A − B counts the seeds where A is ahead; a threshold checked
    seed by seed (`every_seed`) the seeds where it is met, and a ratio is printed unsigned with its unit."""
    digits = 1 if scale > 1 else 3
    value = format_mean_sd(result["value"], scale, digits, signed=not ratio)
    margin = "" if result["margin"] is None else f"; margin {scale * result['margin']:.{digits}f}{unit}"
    interval = "" if not result.get("interval") else \
        f"; 95% interval {scale * result['interval'][0]:+.{digits}f} to {scale * result['interval'][1]:+.{digits}f}"
    counted = "met on" if result["margin"] is None and result["verdict"] != "not judged" else "ahead on"
    text = (f"{name}: {result['verdict']} ({counted} {result['seeds_ahead']} of {result['seeds']} seeds); "
            f"{measure} {value}{unit if ratio else ''} (mean ± sd over seeds{interval}{margin}).")
    if result["verdict"] == "not shown" and result.get("detectable") is not None:
        text += (f" These seeds would show a true difference of {scale * result['detectable']:.{digits}f}{unit} "
                 "four times in five; a smaller one can hide here.")
    return {"claim": name, "measure": measure, "scale": scale, "unit": unit, **result, "text": text}


def _diff(per_seed: dict, a: str, b: str, stage: str = "after", split: str = "overall") -> dict[str, float]:
    """Seed → the paired difference A − B (same seed: same data, base and SFT start)."""
    return {seed: rows[a][stage][split] - rows[b][stage][split] for seed, rows in per_seed.items()}


def _paired(name: str, diffs: dict[str, float], measure: str) -> dict:
    """A claim "A > B" judged on its paired per-seed differences, which the report lists seed by seed."""
    return {**_stated(name, judge(list(diffs.values())), measure), "differences": diffs}


def premise(per_seed: dict, arms: tuple[str, ...]) -> list[dict]:
    """Does this world have the paper's premise? (ModSFT competent, OverSFT collapsed, over-training costs RL.)"""
    if not {"modsft", "oversft"} <= set(arms):
        return []
    rows = list(per_seed.values())
    competence = [r["modsft"]["before"]["overall"] / r["oversft"]["before"]["overall"]
                  if r["oversft"]["before"]["overall"] > 0 else float("inf") for r in rows]
    collapse = [r["oversft"]["entropy"] / r["modsft"]["entropy"] for r in rows]
    return [
        _stated("ModSFT is competent (pre-RL overall pass@1 at least half of OverSFT's, every seed; paper: 91%)",
                every_seed(competence, lambda v: v >= 0.5), "ModSFT / OverSFT", 100.0, "%", ratio=True),
        _stated("OverSFT collapsed (entropy at most 0.2× ModSFT's, every seed; paper: 0.024 / 0.184 = 0.13)",
                every_seed(collapse, lambda v: v <= 0.2), "entropy OverSFT / ModSFT", 1.0, "", ratio=True),
        _paired("Over-training costs RL: ModSFT + RL > OverSFT + RL (overall; paper: 17.0 vs 14.9)",
                _diff(per_seed, "modsft", "oversft"), "overall pass@1 after RL, ModSFT − OverSFT"),
    ]


def claims(per_seed: dict, arms: tuple[str, ...]) -> list[dict]:
    """The paper's claims, and those of the alternatives present, each judged with a margin over seeds."""
    out = []
    have = set(arms)
    for a, b, name, split in (
            ("oversft_fusion", "oversft", "Fusion + RL > OverSFT + RL (overall; paper: ablation, fusion brings most "
                                          "of the gain)", "overall"),
            ("oversft_rejuv", "oversft_fusion", "Rejuvenation + RL > fusion + RL (overall; paper: the reset adds "
                                                "on top)", "overall"),
            ("oversft_rejuv", "modsft", "Rejuvenation + RL > ModSFT + RL (overall; paper: 17.5 vs 17.0)", "overall"),
            ("oversft_rejuv", "oversft", "OOD: Rejuvenation + RL > OverSFT + RL (paper: 15.3 vs 12.2 OOD avg.)",
             "ood"),
            ("chord_mu", "modsft", "CHORD-µ > staged ModSFT → RL (overall, after RL)", "overall"),
            ("chord_phi", "modsft", "CHORD-φ > staged ModSFT → RL (overall, after RL)", "overall"),
            ("pear", "oversft", "PEAR SFT + RL > OverSFT + RL (same epochs; overall, after RL)", "overall"),
            ("oversft_filter", "oversft", "Filtered RL > plain RL from OverSFT (overall, after RL)", "overall"),
            ("dft", "oversft", "DFT + RL > OverSFT + RL (overall; paper: 15.2 vs 14.9)", "overall"),
            ("oversft_rejuv", "oversft_random", "Rejuvenation + RL > random reset + RL (overall; the attribution "
                                                "beats a random reset of the same size per module)", "overall"),
    ):
        if {a, b} <= have:
            out.append(_paired(name, _diff(per_seed, a, b, split=split),
                               f"{split} pass@1 after RL, {LABELS[a]} − {LABELS[b]}"))
    if {"oversft", "oversft_rejuv"} <= have:
        rows = list(per_seed.values())
        entropy = every_seed([r["oversft_rejuv"]["entropy"] - r["oversft"]["entropy"] for r in rows], lambda d: d > 0)
        kept = [r["oversft_rejuv"]["before"]["overall"] / r["oversft"]["before"]["overall"]
                if r["oversft"]["before"]["overall"] else 0.0 for r in rows]
        claim = _stated("Rejuvenation restores entropy (above OverSFT's, every seed)", entropy,
                        "entropy Rejuvenation − OverSFT (nats)", 1.0, "")
        claim["text"] += (f" Accuracy kept before RL: {format_mean_sd(mean_sd(kept), 100, 0)}% of OverSFT's overall "
                          f"pass@1 (paper: 54%).")
        claim["accuracy_kept"] = mean_sd(kept)
        out.append(claim)
    if {"oversft_rejuv", "oversft_random"} <= have:  # before RL: what the attribution buys over chance
        rows = list(per_seed.values())
        entropy = [r["oversft_rejuv"]["entropy"] - r["oversft_random"]["entropy"] for r in rows]
        out.append(_stated("The attributed reset restores more entropy than a random one of the same size "
                           "(before RL)", judge(entropy, floor=0.005), "entropy Rejuvenation − random reset (nats)",
                           1.0, ""))
        out.append(_paired("The attributed reset keeps more accuracy than a random one of the same size (before RL)",
                           _diff(per_seed, "oversft_rejuv", "oversft_random", stage="before"),
                           "overall pass@1 before RL, Rejuvenation − random reset"))
    if {"conf", "conf_brier"} <= have and all(
            (r["conf"]["calibration"]["after"] and r["conf_brier"]["calibration"]["after"]) for r in per_seed.values()):
        def cal(r, arm, key):
            return r[arm]["calibration"]["after"][key]

        for key, name in (("brier", "The Brier reward lowers the Brier score after RL"),
                          ("ece", "The Brier reward lowers ECE after RL")):
            diffs = [cal(r, "conf", key) - cal(r, "conf_brier", key) for r in per_seed.values()]
            out.append(_stated(name, judge(diffs, floor=0.01), f"{key} after RL, without − with the Brier reward",
                               1.0, ""))
    return out


def rl_length(per_seed: dict, arms: tuple[str, ...]) -> dict:
    """Per arm: on how many seeds the reward curve flattened (last fifth within FLAT of the fifth before)."""
    out = {}
    for arm in arms:
        changes = [per_seed[s][arm]["reward_last_change"] for s in per_seed]
        flat = sum(1 for c in changes if c is not None and c < FLAT)
        out[arm] = {"flattened_seeds": flat, "seeds": len(changes), "last_change": mean_sd(changes)}
    return out


def target_classes(folder: Path, rules: dict, calib: Path, tokenizer_path: Path, p: Preset, seed: int) -> dict:
    """Share of the Rejuvenation arm's entropy-gap targets by token class (format, result digits, ...)."""
    from transformers import AutoTokenizer

    from rejuv.data.calibration import load_calibration

    record = folder / candidate(rules["alpha"]["chosen"], max(RHOS)) / "attribution.json"  # the grid's pass
    if not record.exists():
        return {}
    tok = AutoTokenizer.from_pretrained(tokenizer_path)
    samples = load_calibration(calib, tok, p.calib_rows, seed).samples
    counts = dict.fromkeys(TOKEN_CLASSES, 0)
    targets = json.loads(record.read_text())["targets"]
    for sample, position, token, _ in targets:
        s = samples[sample]
        pieces = [tok.decode([i]) for i in s.input_ids[s.response_start:]]
        k = position + 1 - s.response_start
        if token in tok.all_special_ids:
            counts["format"] += 1
            continue
        counts[char_classes("".join(pieces))[sum(len(x) for x in pieces[:k])]] += 1
    return {c: n / len(targets) for c, n in counts.items()}


def seed_rules(root: Path, seed: int, p: Preset) -> tuple[dict | None, dict | None, dict | None]:
    """One seed's α and ρ by the rules (rules.json), its reset's targets by token class, and where the reset
    fell (by layer and kind); None for each when the seed has no fusion or Rejuvenation arm."""
    folder = root / f"seed-{seed}" / "rules"
    if not (folder / "rules.json").exists():
        return None, None, None
    rules = json.loads((folder / "rules.json").read_text())
    classes = target_classes(folder, rules, root / f"seed-{seed}" / "data" / "calib.jsonl",
                             root / f"seed-{seed}" / "sft" / epoch_dir_name(p.over_epochs), p, seed)
    layers = None
    manifest = folder / rules["rejuvenation"] / "rejuvenation.json"
    if manifest.exists():
        m = json.loads(manifest.read_text())
        layers = {"rho": m["rho"], "neurons_reset": m["neurons_reset"], "neurons_total": m["neurons_total"],
                  "by_layer": {k: v["reset"] for k, v in m["reset_by_layer"].items()},
                  "by_kind": {k: v["reset"] for k, v in m["reset_by_kind"].items()}}
    return rules, classes, layers


def deviations(p: Preset, rules: dict, params: int | None) -> list[str]:
    """How this run departs from the paper's setting, computed from the preset and the rules' choices."""
    alphas = sorted({r["alpha"]["chosen"] for r in rules.values()})
    rhos = sorted({r["rho"]["chosen"] for r in rules.values()})
    out = [f"model: {params / 1e6:.2f} M parameters ({p.layers} layers, hidden {p.hidden}) instead of EvoLM-4B; "
           f"{p.sft_rows} SFT rows instead of 100k; SFT learning rate {p.sft_lr:g} instead of 3e-6"
           if params else f"model: {p.layers} layers, hidden {p.hidden} instead of EvoLM-4B",
           f"RL: {p.rl_steps} GRPO steps × {p.rl_prompts_per_step} prompts × {p.num_generations} samples at "
           f"learning rate {p.rl_lr:g} (paper: 1e-6, a full RL run)",
           f"evaluation: {p.eval_rows} ID + {p.eval_rows} OOD problems × {p.samples} samples per seed; OOD is a "
           "prompt phrasing SFT never shows, not another domain",
           f"targets: {p.targets_per_sample} per calibration sample of about 30 response tokens, on "
           f"{p.calib_rows} samples"]
    if rules:
        out.append("alpha " + ", ".join(f"{a:g}" for a in alphas) + " chosen by the rule (the paper's 0.5 unless it "
                   "keeps less than half of OverSFT's calibration pass rate); rho " + ", ".join(f"{r:g}" for r in rhos)
                   + " chosen by the rule (the paper uses 0.01)")
    return out


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


CLAIM_HEADER = ["claim", "decision", "mean ± sd", "95% interval", "margin", "seeds ahead (or met)",
                "would show (80% power)"]


def claim_rows(found: list[dict]) -> list[list[str]]:
    """Every claim as a table row: its decision, value, interval, margin and the effect the seeds could show."""
    rows = []
    for c in found:
        scale, unit, digits = c.get("scale", 100.0), c.get("unit", " points"), 1 if c.get("scale", 100.0) > 1 else 3
        ratio = c["margin"] is None
        interval = "–" if not c.get("interval") else \
            f"{scale * c['interval'][0]:+.{digits}f} to {scale * c['interval'][1]:+.{digits}f}"
        rows.append([c["claim"], c["verdict"], format_mean_sd(c["value"], scale, digits, signed=not ratio) + unit,
                     interval, "–" if ratio else f"{scale * c['margin']:.{digits}f}",
                     f"{c['seeds_ahead']} of {c['seeds']}",
                     "–" if c.get("detectable") is None else f"{scale * c['detectable']:.{digits}f}"])
    return rows


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
    return [[r["rule"], r["how"], format_mean_sd(r["shortfall"], 100), f"{r['best_picked']} of {len(r['picks'])}",
             format_mean_sd(r["spearman"], 1, 2, signed=True),
             ", ".join(f"{s}: {p or '–'}" for s, p in r["picks"].items())] for r in group.get("rules", [])]


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


def base_params(root: Path) -> int | None:
    """The base model's parameter count (None before the base exists)."""
    from rejuv.io.reader import Checkpoint

    model = root / "base" / "model"
    if not model.is_dir():
        return None
    with Checkpoint(model) as ckpt:
        return sum(math.prod(info.shape) for info in ckpt.tensors.values())


def _claims_both_ways(per_seed: dict, arms: tuple[str, ...], reproduced: dict, found: list[dict]) -> list[dict]:
    """Each claim (premise included) with the committed records and with this machine's runs of the reproduced
    seeds in their place: decision and 95% interval both ways, as the claims table writes them."""
    here = {**per_seed, **{str(s): {a: r["record"]["rows"][a] for a in arms} for s, r in reproduced.items()}}
    other = premise(here, arms) + claims(here, arms)
    both = []
    for committed, mine, row, row_here in zip(found, other, claim_rows(found), claim_rows(other), strict=True):
        moved = None
        if committed.get("interval") and mine.get("interval"):
            moved = max(abs(a - b) for a, b in zip(committed["interval"], mine["interval"], strict=True)) * \
                committed.get("scale", 100.0)
        both.append({"claim": committed["claim"], "committed": {"decision": row[1], "interval": row[3]},
                     "here": {"decision": row_here[1], "interval": row_here[3]},
                     "same_decision": row[1] == row_here[1], "interval_moved": moved})
    return both


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


def _seed_list(seeds: list[int]) -> str:
    """`0-3, 5-11`: runs of consecutive seeds."""
    runs, out = [], []
    for seed in sorted(seeds):
        if runs and seed == runs[-1][1] + 1:
            runs[-1][1] = seed
        else:
            runs.append([seed, seed])
    for a, b in runs:
        out.append(str(a) if a == b else f"{a}-{b}" if b > a + 1 else f"{a}, {b}")
    return ", ".join(out)


def _provenance(preset: Preset, records: dict[int, dict], sources: dict[int, str], ran: list[int],
                reproduced: dict, elsewhere: dict, numerics: dict) -> dict:
    """Where every number of the report came from, as the first lines a reader sees (short: the seeds run on
    this machine with their time, the seeds read from committed records with the commits that wrote them, the
    reproduction check of a seed that was both), and the reproduction's details for further down."""
    read = [s for s in preset.seeds if s not in ran or s in reproduced]
    machine = f"{numerics.get('threads', '?')} threads, {numerics.get('cpu_capability', numerics.get('device', '?'))}"
    if numerics.get("cpu_isa"):
        machine += " with " + ", ".join(numerics["cpu_isa"])
    lines, details = [], []
    if ran:
        here = {s: reproduced[s]["record"] if s in reproduced else records[s] for s in ran}
        lines.append("Run on this machine: " + ", ".join(f"seed {s} ({r['seconds'] / 60:.1f} min)"
                                                         for s, r in here.items()) + f"; {machine}.")
    if read:
        commits = sorted({records[s]["written_by"]["commit"] or records[s]["written_by"]["rejuv"] or "?" for s in read})
        folders = sorted({str(Path(sources[s]).parent) for s in read})
        lines.append(f"Read from committed records: seeds {_seed_list(read)} ({', '.join(folders)}; written at "
                     f"{', '.join(commits)})" + (": the claims count these." if reproduced else "."))
    for seed, found in sorted(elsewhere.items()):
        lines.append(f"Seed {seed}'s record was made elsewhere ({found.get('threads', '?')} threads, "
                     f"{found.get('cpu_capability', '?')}): its numbers are that machine's, not this one's.")
    checks = {}
    for seed, r in sorted(reproduced.items()):
        numbers, compared = r["differences"], r["values"]
        if not numbers:
            lines.append(f"Reproduction check: seed {seed}, run here, reproduced its committed record digit for "
                         f"digit ({compared} values).")
        else:
            arms = list(records[seed]["rows"])
            after = "; ".join(f"{LABELS[a]} {100 * records[seed]['rows'][a]['after']['overall']:.1f} / "
                              f"{100 * r['record']['rows'][a]['after']['overall']:.1f}" for a in arms)
            lines.append(f"Reproduction check: seed {seed}, run here, did not reproduce its committed record: "
                         f"{len(numbers)} of {compared} values differ (overall pass@1 after RL, committed / here: "
                         f"{after}).")

            def overall(rows: dict, arm: str) -> str:
                return f"{100 * rows[arm]['before']['overall']:.1f} → {100 * rows[arm]['after']['overall']:.1f}"

            stated = (records[seed]["world"].get("numerics") or {}).get("cpu_isa") is not None
            details.append(
                f"Seed {seed}: this machine's run ({r['path']}) against the committed record ({r['committed']}), "
                "overall pass@1 before → after RL, committed / here: " + "; ".join(
                    f"{LABELS[a]} {overall(records[seed]['rows'], a)} / {overall(r['record']['rows'], a)}"
                    for a in arms) + ". With the same thread count and code path, this CPU rounds float32 sums "
                "otherwise than the one that made the record (other kernels or instruction-set extensions"
                + ("" if stated else "; the record, made before rejuv recorded them, cannot say which")
                + "), and a thousand training steps carry the difference into other models, as far apart as "
                  "seeds are (docs/lab.md, \"Reproducing a run\"). Every value that differs is in report.json "
                  "(provenance.reproduction).")
        checks[str(seed)] = {"committed": r["committed"], "here": r["path"], "reproduced": not numbers,
                             "values_compared": compared, "differences": numbers}
    return {"ran_here": list(ran), "read_from_records": read, "elsewhere": {str(k): v for k, v in elsewhere.items()},
            "reproduction": checks, "lines": lines, "details": details}


def write_report(root: Path, preset: Preset, arms: tuple[str, ...], preset_name: str, seconds: float,
                 numerics: dict, records: dict[int, dict], sources: dict[int, str], ran: list[int] | None = None,
                 reproduced: dict | None = None, elsewhere: dict | None = None,
                 planner_records: dict | None = None) -> dict:
    """The report over every seed's record (`lab/records.py`: this run's seeds and any pooled from other
    sittings), in `preset.seeds`' order; `sources` says where each record came from, `ran` which seeds this run
    ran (default: those whose record it wrote in `root/records`). `reproduced`: seeds run
    here and compared with their committed records (which the claims count); `elsewhere`: pooled records made
    with other CPU numerics; `planner_records`: records of `--preset planner` runs whose check is shown."""
    reproduced, elsewhere = reproduced or {}, elsewhere or {}
    if ran is None:
        ran = [s for s in preset.seeds if Path(sources[s]).parent == root / "records"]
    per_seed = {str(seed): {arm: records[seed]["rows"][arm] for arm in arms} for seed in preset.seeds}
    table = summarize(per_seed, arms)
    stated = preset.claims
    found_premise = premise(per_seed, arms) if stated else []
    found = claims(per_seed, arms) if stated else []
    rules = {str(s): records[s]["rules"] for s in preset.seeds if records[s]["rules"] is not None}
    classes = {str(s): records[s]["target_classes"] for s in preset.seeds if records[s]["target_classes"]}
    layers = {str(s): records[s]["reset"] for s in preset.seeds if records[s]["reset"] is not None}
    mean_classes = {c: statistics.fmean(v[c] for v in classes.values()) for c in TOKEN_CLASSES} \
        if classes else {}
    planner = summarize_planner({seed: records[seed]["planner"] for seed in preset.seeds}, preset.dev_seeds,
                                fixed_rule=preset.planner_rule) \
        if preset.plan_epochs else None
    if planner_records:  # the planner check of committed `--preset planner` records, beside this run's claims
        from rejuv.lab.presets import PRESETS

        planner = summarize_planner({s: r["planner"] for s, (r, _) in planner_records.items()},
                                    PRESETS["planner"].dev_seeds)
        planner["records"] = {str(s): f for s, (_, f) in planner_records.items()}
        planner["records_text"] = (f"seeds {_seed_list(list(planner_records))} of "
                                   + ", ".join(sorted({str(Path(f).parent) for _, f in planner_records.values()})))
    params = next((records[s]["params"] for s in preset.seeds if records[s]["params"] is not None), None)
    provenance = _provenance(preset, records, sources, ran, reproduced, elsewhere, numerics)
    if reproduced and stated:
        both = provenance["claims_both_ways"] = _claims_both_ways(per_seed, arms, reproduced, found_premise + found)
        changed = [c["claim"] for c in both if not c["same_decision"]]
        moved = [c["interval_moved"] for c in both if c["interval_moved"]]
        provenance["lines"].append(
            f"With this machine's run of seed {', '.join(map(str, sorted(reproduced)))} in place of its committed "
            "record: " + (f"every decision the same ({len(both)} of {len(both)})" if not changed else
                          f"the decision changes for {len(changed)} of {len(both)}: " + "; ".join(changed))
            + (f"; the 95% intervals move by up to {max(moved):.1f} points at an end" if moved else
               "; the intervals the same") + ".")
    report = {"preset": preset_name, "settings": asdict(preset), "arms": list(arms), "seeds": list(preset.seeds),
              "provenance": provenance,
              "compute_seconds": seconds, "numerics": numerics, "claims_stated": stated,
              "records": {str(s): {"from": sources[s], "seconds": records[s]["seconds"],
                                   "written_by": records[s]["written_by"],
                                   "numerics": records[s]["world"].get("numerics")} for s in preset.seeds},
              "judging": {"floor": FLOOR, "rule": "held when the mean per-seed difference is at least the margin "
                                                  "max(floor, t95(n-1)·sd/√n); reversed below minus the margin; "
                                                  "not shown between; the 95% interval is two-sided, "
                                                  "mean ± t975(n-1)·sd/√n; a claim not shown states the true "
                                                  "difference these seeds would show with 80% power, "
                                                  "margin + t80(n-1)·sd/√n"},
              "table": table, "premise": found_premise, "claims": found, "rl_length": rl_length(per_seed, arms),
              "rl_updates": rl_updates(per_seed, arms, stated), "dead_groups": dead_groups(per_seed, arms),
              "rules": rules, "target_classes": {"per_seed": classes, "mean": mean_classes}, "reset": layers,
              "per_seed": per_seed, "planner": planner, "deviations": deviations(preset, rules, params)}
    (root / "report.json").write_text(strict_dumps(report) + "\n")
    images = _plots(per_seed, arms)
    for name, png in images.items():
        (root / f"{name}.png").write_bytes(png)
    md = ["Where these numbers come from:", *[f"- {line}" for line in provenance["lines"]], ""]
    if found_premise or found:
        md += [*markdown_rows(*found_table(found_premise + found, provenance)), ""]
    md += [f"- {line}" for line in provenance["details"]]
    md += [markdown_table(table, arms), "", "Per seed (overall pass@1 %; each claim's paired difference, points):",
          *markdown_rows(*per_seed_table(per_seed, arms, found_premise + found)), *calibration_lines(per_seed, arms)]
    if found_premise or found:
        md += ["", *markdown_rows(CLAIM_HEADER, claim_rows(found_premise + found)), ""]
        md += [f"- {c['text']}" for c in found_premise + found]
    updates = report["rl_updates"]
    if updates["lines"]:
        md += ["", "What GRPO changed (from each arm's start):", *[f"- {t}" for t in updates["lines"]],
               *[f"- {c['text']}" for c in updates["claims"]]]
    dead = report["dead_groups"]
    if dead["rows"]:
        md += ["", "Dead GRPO groups, forecast before RL against GRPO's first 10% of steps (%):",
               *markdown_rows(DEAD_HEADER, dead_group_rows(dead))]
    if planner is not None:
        md += ["", "Planner (rejuv plan) against full RL:", *[f"- {t}" for t in planner["texts"]]]
        for label in ("development", "test"):
            if planner.get(label):
                md += ["", f"Rules side by side, {label} seeds:",
                       *markdown_rows(RULES_HEADER, planner_rows(planner[label]))]
    md += ["", "Where each seed's numbers come from:", *markdown_rows(RECORDS_HEADER, records_rows(report["records"]))]
    (root / "table.md").write_text("\n".join(md) + "\n")
    page = _page(report, preset, preset_name, arms, seconds, images, table, per_seed)
    (root / "report.html").write_text(page)
    mark_written(root, "demo", [root / name for name in ("report.json", "table.md", "report.html",
                                                          *(f"{image}.png" for image in images))])
    return report


def _page(report: dict, p: Preset, name: str, arms: tuple[str, ...], seconds: float, images: dict, table: dict,
          per_seed: dict) -> str:
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
                  rules_test=planner_rows(planner.get("test")), rl_length_lines=rl_length_lines,
                  records_header=RECORDS_HEADER, records_rows=records_rows(report["records"]),
                  both_header=BOTH_WAYS_HEADER, both_rows=both_ways_rows(report["provenance"]),
                  found_header=found_header, found_rows=found_rows)
