"""The lab's judgments over seeds: the premise and the claims, each with a margin (`lab/verdicts.py`, never a
tie), the RL length, what GRPO changed, the dead-group forecast against GRPO, the deviations from the paper,
and where every number came from (`judge_report`: the report's content, before it is rendered)."""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict
from pathlib import Path

from rejuv.lab.plan_check import summarize_planner
from rejuv.lab.presets import Preset
from rejuv.lab.results import LABELS
from rejuv.lab.task import TOKEN_CLASSES
from rejuv.lab.verdicts import FLOOR, every_seed, judge
from rejuv.report.stats import format_mean_sd, mean_sd, spearman

FLAT = 0.1  # a reward curve has flattened when its last fifth is within this of the fifth before (±1 rewards)


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


def judge_report(root: Path, preset: Preset, arms: tuple[str, ...], preset_name: str, seconds: float,
                 numerics: dict, records: dict[int, dict], sources: dict[int, str], ran: list[int] | None = None,
                 reproduced: dict | None = None, elsewhere: dict | None = None,
                 planner_records: dict | None = None) -> dict:
    """The report's content over every seed's record (`lab/records.py`: this run's seeds and any pooled from
    other sittings), in `preset.seeds`' order; `sources` says where each record came from, `ran` which seeds this
    run ran (default: those whose record it wrote in `root/records`). `reproduced`: seeds run here and compared
    with their committed records (which the claims count); `elsewhere`: pooled records made with other CPU
    numerics; `planner_records`: records of `--preset planner` runs whose check is shown."""
    reproduced, elsewhere = reproduced or {}, elsewhere or {}
    if ran is None:
        ran = [s for s in preset.seeds if Path(sources[s]).parent == root / "records"]
    per_seed = {str(seed): {arm: records[seed]["rows"][arm] for arm in arms} for seed in preset.seeds}
    stated = preset.claims
    found_premise = premise(per_seed, arms) if stated else []
    found = claims(per_seed, arms) if stated else []
    rules = {str(s): records[s]["rules"] for s in preset.seeds if records[s]["rules"] is not None}
    classes = {str(s): records[s]["target_classes"] for s in preset.seeds if records[s]["target_classes"]}
    mean_classes = {c: statistics.fmean(v[c] for v in classes.values()) for c in TOKEN_CLASSES} \
        if classes else {}
    params = next((records[s]["params"] for s in preset.seeds if records[s]["params"] is not None), None)
    provenance = _provenance(preset, records, sources, ran, reproduced, elsewhere, numerics)
    if reproduced and stated:
        _judge_both_ways(provenance, per_seed, arms, reproduced, found_premise + found)
    return {"preset": preset_name, "settings": asdict(preset), "arms": list(arms), "seeds": list(preset.seeds),
            "provenance": provenance,
            "compute_seconds": seconds, "numerics": numerics, "claims_stated": stated,
            "records": {str(s): {"from": sources[s], "seconds": records[s]["seconds"],
                                 "written_by": records[s]["written_by"],
                                 "numerics": records[s]["world"].get("numerics")} for s in preset.seeds},
            "judging": {"floor": FLOOR, "rule": JUDGING_RULE},
            "table": summarize(per_seed, arms), "premise": found_premise, "claims": found,
            "rl_length": rl_length(per_seed, arms), "rl_updates": rl_updates(per_seed, arms, stated),
            "dead_groups": dead_groups(per_seed, arms), "rules": rules,
            "target_classes": {"per_seed": classes, "mean": mean_classes},
            "reset": {str(s): records[s]["reset"] for s in preset.seeds if records[s]["reset"] is not None},
            "per_seed": per_seed, "planner": _planner(preset, records, planner_records),
            "deviations": deviations(preset, rules, params)}


JUDGING_RULE = ("held when the mean per-seed difference is at least the margin max(floor, t95(n-1)·sd/√n); reversed "
                "below minus the margin; not shown between; the 95% interval is two-sided, mean ± t975(n-1)·sd/√n; a "
                "claim not shown states the true difference these seeds would show with 80% power, "
                "margin + t80(n-1)·sd/√n")


def _planner(preset: Preset, records: dict[int, dict], planner_records: dict | None) -> dict | None:
    """The planner check: this run's (the planner preset), or that of committed `--preset planner` records shown
    beside this run's claims."""
    if planner_records:
        from rejuv.lab.presets import PRESETS

        planner = summarize_planner({s: r["planner"] for s, (r, _) in planner_records.items()},
                                    PRESETS["planner"].dev_seeds)
        planner["records"] = {str(s): f for s, (_, f) in planner_records.items()}
        planner["records_text"] = (f"seeds {_seed_list(list(planner_records))} of "
                                   + ", ".join(sorted({str(Path(f).parent) for _, f in planner_records.values()})))
        return planner
    if not preset.plan_epochs:
        return None
    return summarize_planner({seed: records[seed]["planner"] for seed in preset.seeds}, preset.dev_seeds,
                             fixed_rule=preset.planner_rule)


def _judge_both_ways(provenance: dict, per_seed: dict, arms: tuple[str, ...], reproduced: dict,
                     found: list[dict]) -> None:
    """The claims with this machine's runs of the reproduced seeds in place of their records, and a line saying
    whether any decision changes."""
    both = provenance["claims_both_ways"] = _claims_both_ways(per_seed, arms, reproduced, found)
    changed = [c["claim"] for c in both if not c["same_decision"]]
    moved = [c["interval_moved"] for c in both if c["interval_moved"]]
    provenance["lines"].append(
        f"With this machine's run of seed {', '.join(map(str, sorted(reproduced)))} in place of its committed "
        "record: " + (f"every decision the same ({len(both)} of {len(both)})" if not changed else
                      f"the decision changes for {len(changed)} of {len(both)}: " + "; ".join(changed))
        + (f"; the 95% intervals move by up to {max(moved):.1f} points at an end" if moved else
           "; the intervals the same") + ".")
