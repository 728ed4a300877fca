"""The lab's planner stage: `rejuv plan` over the SFT epochs, checked against full RL from each.

Per seed: the planner ranks the saved SFT epochs by its short RL probes and
searches α (fusion only) on the last epoch; then every epoch, the fused
checkpoint of the α it found best and that of α = 0.5 each get the arms' full
GRPO run and evaluation. The checks, per seed, then summarised over seeds:
- does the probe ranking agree with the ranking by post-RL pass@1 better than
  ranking by pre-RL (SFT) pass@1 does? (Spearman over the epochs)
- is post-RL pass@1 from the searched α at least that from α = 0.5?
"""

from __future__ import annotations

import json
from pathlib import Path

from rejuv.errors import RejuvError
from rejuv.evaluate import EvalConfig, run_eval
from rejuv.lab.stats import format_mean_sd, mean_sd
from rejuv.plan import PlanConfig, run_plan
from rejuv.planner.search import spearman
from rejuv.train.rl import RLRecipeConfig, run_rl
from rejuv.train.sft import epoch_dir_name


def _overall(report: dict) -> dict[str, float]:
    """Checkpoint folder name → pass@1 averaged over the benchmarks (ID and OOD)."""
    return {Path(c).name: v for c, v in report["average_pass@1"].items()}


def run_planner_stage(out: Path, root: Path, base: Path, p, seed: int, files: dict, step) -> None:
    epochs = [root / "sft" / epoch_dir_name(e) for e in p.plan_epochs]
    plan_dir = root / "plan"
    config = PlanConfig(
        base=str(base), checkpoints=[str(e) for e in epochs], calib=str(files["calib"]), probe_data=str(files["rl"]),
        eval_data=str(files["id"]), out=str(plan_dir), rewards=list(p.rewards), budget_steps=p.plan_probe_steps,
        alphas=list(p.plan_alphas), rhos=[0.0], probe_top=2, keep_candidates=True, learning_rate=p.rl_lr,
        num_generations=p.num_generations, prompts_per_step=p.rl_prompts_per_step,
        max_completion_length=p.max_completion_length, samples=p.samples, k=p.samples, max_problems=p.eval_rows,
        max_new_tokens=p.max_completion_length, chat_template="never", max_samples=p.calib_rows, device=p.device,
        seed=seed, progress=False)
    step(out, plan_dir, f"seed {seed}: rejuv plan over epochs {p.plan_epochs} ({p.plan_probe_steps}-step probes)",
         lambda: _plan_or_record(config, plan_dir))
    if not (plan_dir / "plan.json").exists():
        return  # the probes saw no reward signal; the report says so
    plan = json.loads((plan_dir / "plan.json").read_text())
    chosen = plan["search"]["best_probed_alpha"]
    starts = {e.name: e for e in epochs}
    for alpha in sorted({chosen, 0.5}):
        starts[f"alpha{alpha:g}"] = plan_dir / "candidates" / f"alpha{alpha:g}-rho0"
    truth = root / "plan_truth"
    for name, start in starts.items():
        config = RLRecipeConfig(
            model=str(start), data=str(files["rl"]), out=str(truth / "rl" / name), rewards=list(p.rewards),
            learning_rate=p.rl_lr, max_steps=p.rl_steps, num_generations=p.num_generations,
            per_device_batch_size=p.rl_prompts_per_step * p.num_generations,
            max_completion_length=p.max_completion_length, seed=seed, progress=False)
        step(out, truth / "rl" / name, f"seed {seed}: planner check, full GRPO from {name}",
             lambda c=config: run_rl(c))
    config = EvalConfig(checkpoints=[str(truth / "rl" / n) for n in starts], data=[str(files["id"]), str(files["ood"])],
                        out=str(truth / "eval"), samples=p.samples, max_new_tokens=p.max_completion_length,
                        chat_template="never", seed=seed, progress=False)
    step(out, truth / "eval", f"seed {seed}: planner check, evaluation after RL", lambda: run_eval(config))


def _plan_or_record(config: PlanConfig, plan_dir: Path) -> None:
    """Run the planner; if its probes saw no reward signal (a model too weak for the task), record why."""
    try:
        run_plan(config)
    except RejuvError as exc:
        if "every step of every RL probe" not in str(exc):
            raise
        plan_dir.mkdir(parents=True)
        (plan_dir / "skipped.json").write_text(json.dumps({"reason": str(exc)}, indent=2) + "\n")


def seed_result(root: Path) -> dict | None:
    """The planner's checks for one seed; None when the stage did not run, {"skipped": why} when it could not."""
    if (root / "plan" / "skipped.json").exists():
        return {"skipped": json.loads((root / "plan" / "skipped.json").read_text())["reason"]}
    if not (root / "plan_truth" / "eval" / "eval.json").exists():
        return None
    plan = json.loads((root / "plan" / "plan.json").read_text())
    after = _overall(json.loads((root / "plan_truth" / "eval" / "eval.json").read_text()))
    names = [c["name"] for c in plan["checkpoints"]]
    truth = [after[n] for n in names]
    probe = [c["probe"]["reward_end"] for c in plan["checkpoints"]]
    sft_accuracy = [c["signals"]["pass@1"] for c in plan["checkpoints"]]
    chosen = plan["search"]["best_probed_alpha"]
    rec = plan["recommendation"]
    rec_start = rec["name"] if rec["kind"] == "checkpoint" else f"alpha{rec['alpha']:g}"
    best_start = max(after, key=lambda k: (after[k], k))
    return {
        "epochs": names, "post_rl_pass@1": truth, "probe_outcome": probe, "sft_pass@1": sft_accuracy,
        "spearman_probe": spearman(probe, truth), "spearman_sft_accuracy": spearman(sft_accuracy, truth),
        "recommendation": plan["recommendation"]["name"],
        "best_by_full_rl": names[max(range(len(names)), key=lambda i: truth[i])],
        "alpha_chosen": chosen, "post_rl_alpha_chosen": after[f"alpha{chosen:g}"],
        "post_rl_alpha_0.5": after["alpha0.5"],
        "correlations_with_probe": plan["correlations_with_probe"],
        # Over every start that got full RL (the epochs, the searched α, α = 0.5): how far the recommendation is
        # from the best of them after RL.
        "post_rl_recommended": after[rec_start], "best_start_by_full_rl": best_start,
        "regret": after[best_start] - after[rec_start],
    }


def summarize_planner(per_seed: dict[int, dict | None]) -> dict | None:
    """Means, spreads and per-seed counts of the two checks; None if no seed ran the stage."""
    skipped = {s: r["skipped"] for s, r in per_seed.items() if r is not None and "skipped" in r}
    rows = {s: r for s, r in per_seed.items() if r is not None and "skipped" not in r}
    if not rows:
        return None if not skipped else {"seeds": 0, "skipped": skipped, "per_seed": {},
                                         "texts": [f"Planner: no seed could be ranked ({len(skipped)} skipped: "
                                                   "the RL probes saw no reward signal)."]}

    probe = mean_sd([r["spearman_probe"] for r in rows.values()])
    sft = mean_sd([r["spearman_sft_accuracy"] for r in rows.values()])
    better = sum(1 for r in rows.values() if r["spearman_probe"] is not None
                 and r["spearman_sft_accuracy"] is not None and r["spearman_probe"] > r["spearman_sft_accuracy"])
    alpha_ok = sum(1 for r in rows.values() if r["post_rl_alpha_chosen"] >= r["post_rl_alpha_0.5"])
    diff = mean_sd([r["post_rl_alpha_chosen"] - r["post_rl_alpha_0.5"] for r in rows.values()])
    n = len(rows)
    regret = mean_sd([r["regret"] for r in rows.values()])
    hits = sum(1 for r in rows.values() if r["regret"] == 0)
    regret_text = (f"Recommendation vs the best start after full RL (epochs, searched α, α = 0.5): the recommended "
                   f"start was the best on {hits} of {n} seeds; shortfall {format_mean_sd(regret, 100)} points of "
                   "overall pass@1.")
    ranking_text = (f"Planner ranking vs full-RL ranking of {len(next(iter(rows.values()))['epochs'])} SFT epochs: "
                    f"Spearman {_pm(probe)} for the probe against {_pm(sft)} for SFT accuracy; "
                    f"the probe agreed better on {better} of {n} seeds"
                    + (" — held." if better > n / 2 else " — did not hold."))
    alpha_text = (f"Searched α (fusion only) vs α = 0.5 after full RL: {format_mean_sd(diff, 100, signed=True)} "
                  f"points overall pass@1; at least as good on {alpha_ok} of {n} seeds"
                  + (" — held." if alpha_ok > n / 2 else " — did not hold."))
    if skipped:
        alpha_text += f" ({len(skipped)} seed(s) skipped: the RL probes saw no reward signal.)"
    return {"seeds": n, "skipped": skipped, "spearman_probe": probe, "spearman_sft_accuracy": sft,
            "probe_better_seeds": better, "alpha_at_least_as_good_seeds": alpha_ok,
            "alpha_difference": diff, "recommendation_best_seeds": hits, "regret": regret, "per_seed": rows,
            "texts": [ranking_text, alpha_text, regret_text]}


def _pm(cell: dict) -> str:
    if cell["mean"] is None:
        return "n/a"
    return f"{format_mean_sd(cell, digits=2, signed=True)} (n={cell['n']})"
