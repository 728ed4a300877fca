"""The lab's results read back from the files a seed's steps wrote (eval.json, plasticity.jsonl, the diagnosis
report, rules.json, the Rejuvenation arm's manifest and attribution record): `seed_rows`, `seed_rules`, which a
seed's record holds (`lab/records.py`)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from rejuv.diagnostics.groups import measured_dead_share
from rejuv.io.jsonl import read_jsonl
from rejuv.lab.presets import Preset, diagnose_dir
from rejuv.lab.rules import RHOS, candidate
from rejuv.lab.task import TOKEN_CLASSES, char_classes
from rejuv.train.common import epoch_dir_name

LABELS = {"modsft": "ModSFT", "oversft": "OverSFT", "dft": "DFT", "oversft_fusion": "OverSFT + fusion",
          "oversft_rejuv": "OverSFT + Rejuvenation", "modsft_rejuv": "ModSFT + Rejuvenation",
          "chord_mu": "ModSFT → CHORD-µ", "chord_phi": "ModSFT → CHORD-φ", "pear": "PEAR SFT",
          "oversft_filter": "OverSFT, filtered RL", "conf": "Conf. SFT → RL",
          "conf_brier": "Conf. SFT → RL + Brier", "oversft_random": "OverSFT + random reset"}


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
    """What the arm's GRPO run changed (lab/seeds.write_update); None for a run made before it was measured."""
    if not path.exists():
        return None
    u = json.loads(path.read_text())["checkpoints"][0]
    rank = u["rank"].get("all", {})
    return {"rel": u["model"]["rel"], "changed_exact": u["model"]["changed_exact"],
            "changed_bf16": u["model"]["changed_bf16"], "energy_rank_share": rank.get("median_energy_rank_share"),
            "spikes_kept": u["spikes"]["kept"] if u["spikes"] else None}


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


def base_params(root: Path) -> int | None:
    """The base model's parameter count (None before the base exists)."""
    from rejuv.io.reader import Checkpoint

    model = root / "base" / "model"
    if not model.is_dir():
        return None
    with Checkpoint(model) as ckpt:
        return sum(math.prod(info.shape) for info in ckpt.tensors.values())
