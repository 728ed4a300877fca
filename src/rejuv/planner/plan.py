"""`rejuv plan`: which checkpoint to hand to RL, and which α and ρ, with the evidence.

An application on top of four recipes (as the lab is on top of all of them), in four stages:

1. cheap signals of every checkpoint: `run_diagnose` (entropy, top-1 mass, NLL,
   drift, pass@1 and the pass@k gap on the evaluation problems);
2. α/ρ search on one checkpoint (`search_on`, by default the last given):
   `run_apply` for every grid point (one attribution pass for all of them:
   every ρ > 0 reuses the first one's), then entropy recovered and accuracy kept
   (`run_eval`), combined into the search score;
3. RL probes: the same short GRPO run (`run_rl`, `budget_steps` steps, no
   weights saved) from every checkpoint and from the `probe_top` best search
   candidates; its outcome (mean reward over the last quarter) is the ground
   truth the cheap signals are judged against;
4. the recommendation (best probe outcome) with its uncertainty (which
   candidates the probes cannot separate from it) and, where it hands over a
   checkpoint `diagnose` flagged as over-trained, why; the rank correlation of
   each cheap signal with the probe outcome over the checkpoints; plots:
   `plan.json`, `plan.html` and PNGs, written atomically into `out`.
Every prompt follows the rule the other commands share (`rejuv.data.prompts`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rejuv import __version__
from rejuv.data.prompts import chat_template_option
from rejuv.data.rows import problem_rows, sft_rows
from rejuv.diagnostics.diversity import coverage_samples
from rejuv.diagnostics.report import distinct_labels
from rejuv.errors import RejuvError, warn
from rejuv.io.adapter import open_checkpoint
from rejuv.io.inputs import sources
from rejuv.io.jsonl import strict_dumps
from rejuv.io.output import atomic_output_dir, claimed_output
from rejuv.io.reader import Checkpoint
from rejuv.method.fusion import fusion_layout
from rejuv.modeling import (
    allow_pickle_option,
    compute_dtype_option,
    device_option,
    resolve_device,
    trust_remote_code_option,
)
from rejuv.options import (
    Config,
    OptionError,
    Recipe,
    as_given,
    compose,
    option,
    out_option,
    overwrite_option,
    passed_on,
    progress_option,
    recorded,
    seed_option,
    settings_of,
)
from rejuv.planner.search import (
    accuracy_kept,
    accuracy_ratio,
    against_diagnose,
    best,
    check_probes_learn,
    entropy_recovered,
    probe_metrics,
    search_grid,
    search_score,
    uncertainty,
)
from rejuv.provenance import what_ran
from rejuv.recipes.apply import ApplyConfig, run_apply
from rejuv.recipes.diagnose import DiagnoseConfig, DiagnoseEvaluation, ForecastSampling, run_diagnose
from rejuv.recipes.eval import EvalConfig, run_eval
from rejuv.recipes.rl import RLRecipeConfig, run_rl
from rejuv.report.stats import spearman
from rejuv.train.plasticity import read_plasticity_log
from rejuv.train.rewards import needs_answer

# Cheap signals correlated with the probe outcome: (label, how to read it from a diagnose entry).
SIGNALS = {
    "entropy": lambda e: e["outputs"]["mean_entropy"],
    "top1_mass": lambda e: e["outputs"]["top1_mass"],
    "nll": lambda e: e["outputs"]["nll"],
    "drift": lambda e: e["params"]["model"]["rel"],
    "pass@1": lambda e: (e.get("sampling") or {}).get("pass@1"),
    "pass_gap": lambda e: (e.get("sampling") or {}).get("gap"),
    # the dead-group forecast on the probe prompts, at the probes' temperature and group size
    "dead_groups": lambda e: (e.get("groups") or {}).get("dead_share"),
    "pass@group": lambda e: (e.get("groups") or {}).get("pass@group"),
    # from --coverage-k samples per probe prompt of the base and every checkpoint, at the probes' temperature
    "coverage": lambda e: (e.get("coverage") or {}).get("pass@k"),
    "coverage_ratio": lambda e: (e.get("coverage") or {}).get("ratio"),
    "diversity": lambda e: (e.get("coverage") or {}).get("diversity"),
}


# --no-probes: the paper's α, the probe-free rule the lab judged against the probes (lab/plan_check.PROBE_FREE)
PROBE_FREE_ALPHA = 0.5
_DEFAULT_GRID = {"alphas": [0.3, 0.5, 0.7, 0.9], "rhos": [0.0, 0.01]}

# The probes are `rejuv rl` runs and the evaluations `rejuv eval` runs: their settings are those recipes'
# options (`probe:` and `evaluation:` in YAML, `--probe-*` and `--eval-*` flags), less what plan sets itself.
ProbeSettings = settings_of(RLRecipeConfig, "ProbeSettings", owned=(
    "model", "data", "out", "max_steps", "seed", "save_model", "chat_template", "trust_remote_code", "allow_pickle",
    "progress", "overwrite", "base", "continue_adapter"),
    defaults={"per_device_batch_size": 32, "max_completion_length": 512})
PlanEvaluation = EvalConfig.section("PlanEvaluation", max_new_tokens=512, max_problems=64)


@dataclass
class PlanConfig(Config):
    """Which checkpoint to hand to RL, and which α/ρ: cheap signals checked against short RL probes."""

    checkpoints: list[str] = option(positional=True, help="Checkpoints, e.g. the epochs of one SFT run: model "
                                    "folders, PEFT LoRA adapters over --base, or Hub IDs (org/name[@revision]).",
                                    path="checkpoint", distinct=True)
    base: str = option(help="Base model the checkpoints were trained from (a folder or Hub ID).", path="checkpoint")
    calib: str = option(help="Calibration JSONL (prompt/response or messages), e.g. held-out SFT data.", path="file")
    probe_data: str = option(help="RL prompts with answers for the probes (JSONL/parquet).", path="file")
    out: str = out_option("Plan folder: plan.json, plan.html, PNG plots, and the runs behind them.")
    names: list[str] = option([], flag="--name", help="Label per checkpoint, in order (repeat the option).",
                              default_text="folder names")
    eval_data: str | None = option(None, help="Problems for pass@1 / pass@k.", default_text="the probe data",
                                   path="file")
    budget_steps: int = option(30, help="GRPO steps per probe (8 or more give the outcome a spread).", at_least=4)
    alphas: list[float] = option(_DEFAULT_GRID["alphas"], help="α grid of the search, comma-separated.", at_least=0,
                                 at_most=1)
    rhos: list[float] = option(_DEFAULT_GRID["rhos"], help="ρ grid of the search, comma-separated (0 = fusion "
                               "only).", at_least=0, below=1)
    search_on: str | None = option(None, help="Checkpoint (name or path) the α/ρ search runs on.",
                                   default_text="the last")
    probe_top: int = option(2, help="Search candidates that get an RL probe.", at_least=0)
    probes: bool = option(True, help="RL probes. --no-probes: the probe-free rule instead, the searched checkpoint "
                          "fused with the base at α 0.5 (no search, no RL: a third of the time with four 25-step "
                          "probes in the lab's world); in the lab it was within the seeds' spread of the probes' "
                          "pick (docs/plan.md).")
    keep_candidates: bool = option(False, help="Keep the searched candidates' weights (else only their manifests).")
    probe: ProbeSettings = option(ProbeSettings(), help="Probe:")
    evaluation: PlanEvaluation = option(PlanEvaluation(), flag="--eval", help="Evaluation:")
    k: int = option(4, help="k of pass@k (at most --eval-samples).", at_least=1)
    forecast_prompts: int = option(64, help="Probe prompts sampled, a group each at the probes' temperature, for "
                                   "the dead-group forecast of every checkpoint.", at_least=1)
    coverage_k: int = option(16, help="Samples per probe prompt (of those --forecast-prompts) of the base and every "
                             "checkpoint at the probes' temperature, for pass@K against the base's (TailSFT's "
                             "coverage) and 1 − self-BLEU among them (AESL's diversity): signals the field's rules "
                             "read. 0: off.", at_least=0, check=coverage_samples)
    chat_template: str = chat_template_option()
    # calibration passes
    max_samples: int = option(64, help="Calibration rows used.", at_least=1)
    device: str | None = device_option()
    dtype: str = compute_dtype_option()
    seed: int = seed_option("Seed of every step.")
    overwrite: bool = overwrite_option("plan folder")
    allow_pickle: bool = allow_pickle_option()
    trust_remote_code: bool = trust_remote_code_option()
    progress: bool = progress_option("Progress lines.")

    def check(self) -> None:
        if len(self.checkpoints) < 2:
            raise OptionError("checkpoints", f"plan compares checkpoints and got {len(self.checkpoints)}; give at "
                              "least two (for α/ρ on one checkpoint alone, use `rejuv apply`)")
        try:
            search_grid(self.alphas, self.rhos)
        except RejuvError as exc:
            raise OptionError("alphas", str(exc)) from None
        if not self.probes:
            for name in ("alphas", "rhos"):  # they would choose a start that --no-probes never builds
                if getattr(self, name) != _DEFAULT_GRID[name]:
                    raise OptionError(name, f"--no-probes searches no grid: it fuses at α {PROBE_FREE_ALPHA:g} "
                                      "with no reset; drop this option, or the --no-probes")
        if self.k > self.evaluation.samples:
            raise OptionError("k", f"{self.k} is larger than the {self.evaluation.samples} samples drawn per problem "
                              "(raise --eval-samples)", also=("evaluation.samples",))
        _probe_config(self, self.checkpoints[0], self.out)  # every probe setting, checked as `rejuv rl` checks it
        _ = self.searched  # refuses a --search-on that names no checkpoint

    @property
    def labels(self) -> list[str]:
        return distinct_labels(self.checkpoints, self.names)

    @property
    def searched(self) -> int:
        """The index of the checkpoint the α/ρ search runs on."""
        target = self.search_on or self.checkpoints[-1]
        matches = [i for i, (c, n) in enumerate(zip(self.checkpoints, self.labels, strict=True)) if target in (c, n)]
        if not matches:
            raise OptionError("search_on", f"{target!r} is none of the checkpoints ({', '.join(self.labels)})")
        return matches[0]


def _check_architectures(cfg: PlanConfig) -> None:
    """Fail before any work if a checkpoint does not line up with the base (names the tensor or field)."""
    with Checkpoint(cfg.base, cfg.allow_pickle) as base:
        for path in cfg.checkpoints:
            with open_checkpoint(path, cfg.allow_pickle, cfg.base) as ckpt:
                fusion_layout(base, ckpt)


def _log(cfg: PlanConfig, message: str) -> None:
    if cfg.progress:
        print(f"[plan] {message}", flush=True)


def run_plan(cfg: PlanConfig) -> dict:
    """Run `rejuv plan`; returns the content of `<out>/plan.json`."""
    with claimed_output(cfg, "plan") as out:
        return _plan(cfg, out)


def _check_rows(cfg: PlanConfig) -> None:
    """Every data file's rows, read as the steps will read them, before the first step runs."""
    sft_rows(cfg.calib, "calibration")
    problem_rows(cfg.probe_data, need_answer=needs_answer(cfg.probe.rewards))
    problem_rows(cfg.eval_data or cfg.probe_data)


def _plan(cfg: PlanConfig, out: Path) -> dict:
    from rejuv.planner.report import render_html, write_plots

    labels, searched = cfg.labels, cfg.searched
    if cfg.probes and cfg.budget_steps < 8:
        warn(f"plan: with budget_steps {cfg.budget_steps} the probes' outcome is the mean of one step, so its spread "
             "cannot be estimated and the probes cannot separate the candidates; give 8 or more")
    _check_rows(cfg)
    _check_architectures(cfg)
    eval_data = cfg.eval_data or cfg.probe_data
    with atomic_output_dir(out, cfg.overwrite, command="plan") as tmp:
        _log(cfg, f"diagnosing {len(cfg.checkpoints)} checkpoints")
        diagnosis = run_diagnose(DiagnoseConfig(
            base=cfg.base, checkpoints=list(cfg.checkpoints), names=labels, calib=cfg.calib, out=str(tmp / "diagnose"),
            eval=eval_data, k=cfg.k, evaluation=compose(DiagnoseEvaluation, cfg.evaluation),
            max_samples=cfg.max_samples, dtype=cfg.dtype, **passed_on(cfg, DiagnoseConfig), rl_data=cfg.probe_data,
            group_size=cfg.probe.num_generations,
            prompts_per_step=_completions_per_step(cfg) // cfg.probe.num_generations,
            forecast=ForecastSampling(samples=cfg.probe.num_generations, temperature=cfg.probe.temperature,
                                      top_p=cfg.probe.top_p, max_new_tokens=cfg.probe.max_completion_length,
                                      max_problems=cfg.forecast_prompts), coverage_k=cfg.coverage_k))
        entries = {e["name"]: e for e in diagnosis["checkpoints"]}

        grid = search_grid(cfg.alphas, cfg.rhos) if cfg.probes else search_grid([PROBE_FREE_ALPHA], [0.0])
        search = _search(cfg, tmp, labels[searched], cfg.checkpoints[searched], entries[labels[searched]], eval_data,
                         grid)
        probes = _probes(cfg, tmp, labels, search) if cfg.probes else {}

        plan = _assemble(cfg, labels, searched, entries, search, probes, diagnosis)
        plots = write_plots(plan, tmp)
        (tmp / "plan.json").write_text(strict_dumps(plan) + "\n")
        (tmp / "plan.html").write_text(render_html(plan, plots))
        if not cfg.keep_candidates:
            for c in search:
                for weights in Path(c["path"]).glob("*.safetensors*"):
                    weights.unlink()
    return plan


def _probes(cfg: PlanConfig, tmp: Path, labels: list[str], search: list[dict]) -> dict[str, dict]:
    """The same short GRPO run from every checkpoint and the `probe_top` best searched candidates."""
    probed = {label: path for label, path in zip(labels, cfg.checkpoints, strict=True)}
    for c in sorted(search, key=lambda c: -c["score"])[: cfg.probe_top]:
        probed[c["label"]] = c["path"]
    probes = {}
    for label, path in probed.items():
        _log(cfg, f"RL probe from {label} ({cfg.budget_steps} steps)")
        probes[label] = _probe(cfg, tmp / "probes" / label.replace("/", "_"), path)
    check_probes_learn(probes, cfg.probe.rewards)
    return probes


def _search(cfg: PlanConfig, tmp: Path, label: str, path: str, entry: dict, eval_data: str,
            grid: list) -> list[dict]:
    rhos = sorted({c.rho for c in grid if c.rho > 0})
    attribution = None  # one attribution pass serves every candidate: it depends on base, SFT and calibration only
    results = []
    for cand in grid:
        folder = tmp / "candidates" / cand.label
        _log(cfg, f"search on {label}: α={cand.alpha:g}, ρ={cand.rho:g}")
        manifest = run_apply(_candidate(cfg, path, cand.alpha, cand.rho, str(folder), rhos, attribution))
        if cand.rho > 0 and attribution is None:
            attribution = str(folder)
        entropy = manifest["entropy"]
        results.append({"label": cand.label, "alpha": cand.alpha, "rho": cand.rho, "path": str(folder),
                        "entropy": entropy["rejuvenated"] if cand.rho > 0 else entropy["fused"],
                        "entropy_sft": entropy["sft"], "entropy_base": entropy["base"],
                        "neurons_reset": manifest["neurons_reset"],
                        "effective_reset_ratio": manifest["effective_reset_ratio"],
                        "calibration_accuracy": manifest["calibration_accuracy"]["rejuvenated" if cand.rho > 0
                                                                                  else "fused"]})
    report = run_eval(compose(
        EvalConfig, cfg.evaluation, checkpoints=[r["path"] for r in results], data=[eval_data],
        out=str(tmp / "candidates" / "eval"), pass_k=sorted({1, cfg.k}), overwrite=False, base=cfg.base,
        **passed_on(cfg, EvalConfig)))
    sft_accuracy = entry["sampling"]["pass@1"]
    for r, ev in zip(results, report["results"], strict=True):
        r["pass@1"] = ev["pass@1"]
        r["entropy_recovered"] = entropy_recovered(r["entropy"], r["entropy_sft"], r["entropy_base"])
        r["accuracy_kept"] = accuracy_kept(r["pass@1"], sft_accuracy)
        r["accuracy_ratio"] = accuracy_ratio(r["pass@1"], sft_accuracy)
        r["score"] = search_score(r["entropy_recovered"], r["accuracy_kept"])
    return results


def _probe_config(cfg: PlanConfig, model: str, out: str) -> RLRecipeConfig:
    return compose(RLRecipeConfig, cfg.probe, "probe", model=model, data=cfg.probe_data, out=out,
                   max_steps=cfg.budget_steps, save_model=False, overwrite=False, base=cfg.base,
                   **{**passed_on(cfg, RLRecipeConfig), "progress": False})


def _completions_per_step(cfg: PlanConfig) -> int:
    return cfg.probe.per_device_batch_size * cfg.probe.gradient_accumulation_steps


def _probe(cfg: PlanConfig, folder: Path, model: str) -> dict:
    run_rl(_probe_config(cfg, model, str(folder)))
    return probe_metrics(read_plasticity_log(folder / "plasticity.jsonl"), _completions_per_step(cfg))


def _assemble(cfg: PlanConfig, labels: list[str], searched: int, entries: dict, search: list[dict],
              probes: dict[str, dict], diagnosis: dict) -> dict:
    checkpoints = []
    for label, path in zip(labels, cfg.checkpoints, strict=True):
        e = entries[label]
        checkpoints.append({"name": label, "path": as_given(cfg, path),
                            "signals": {k: f(e) for k, f in SIGNALS.items()}, "flagged": e["flagged"],
                            "probe": probes.get(label)})
    outcome = [(c["probe"] or {}).get("reward_end") for c in checkpoints]
    correlations = {k: spearman([c["signals"][k] for c in checkpoints], outcome) for k in SIGNALS}
    for c in search:
        c["probe"] = probes.get(c["label"])
        c["command"] = _apply_command(cfg, cfg.checkpoints[searched], c, search)
    recommendation = _recommendation(cfg, labels, searched, entries, search, probes)
    warnings = _warnings(cfg, recommendation, entries, labels[searched])
    probed_search = [c for c in search if c["probe"] is not None]
    best_search = best({c["label"]: c["probe"] for c in probed_search}) if probed_search else None
    return {
        "version": __version__, "seed": cfg.seed, "config": recorded(cfg), "sources": sources(cfg),
        "ran": what_ran(resolve_device(cfg.device), cfg.dtype,
                        "transformers (passes)" + (", TRL (probes)" if probes else "")),
        "recommendation": recommendation,
        "warnings": warnings,
        "checkpoints": checkpoints,
        "correlations_with_probe": correlations,
        "checkpoint_order": {"by_probe": sorted(labels, key=lambda n: -probes[n]["reward_end"]) if probes else None,
                             "by_pass@1": sorted(labels, key=lambda n: -(entries[n]["sampling"]["pass@1"]))},
        "search": {"on": labels[searched], "candidates": [{k: v for k, v in c.items() if k != "path"} for c in search],
                   "best_probed": best_search,
                   "best_probed_alpha": next((c["alpha"] for c in search if c["label"] == best_search), None),
                   "best_probed_rho": next((c["rho"] for c in search if c["label"] == best_search), None)},
        "probe": None if not probes else {
            "steps": cfg.budget_steps, "rewards": cfg.probe.rewards, "learning_rate": cfg.probe.learning_rate,
            "num_generations": cfg.probe.num_generations,
            "prompts_per_step": _completions_per_step(cfg) // cfg.probe.num_generations,
            "outcome": "mean reward over the last quarter of the probe's steps",
            "uncertainty": "standard error of that mean from the per-step rewards (a floor: steps are not "
                           "independent); candidates are separated beyond 2 standard errors of the difference"},
        "evaluation": {"problems": diagnosis["sampling"]["problems"] if diagnosis.get("sampling") else None,
                       "samples": cfg.evaluation.samples, "k": cfg.k, "temperature": cfg.evaluation.temperature},
        "calibration": diagnosis["calibration"],
    }


def _recommendation(cfg: PlanConfig, labels: list[str], searched: int, entries: dict, search: list[dict],
                    probes: dict[str, dict]) -> dict:
    """The best probe outcome, a checkpoint as it is or a searched candidate (with the command that rebuilds
    it), with its outcome, which candidates the probes cannot separate from it, and what diagnose said of it."""
    if not probes:
        return _probe_free(cfg, labels[searched], entries, search)
    winner = best(probes)
    if winner in entries:
        recommendation = {"kind": "checkpoint", "name": winner, "path": cfg.checkpoints[labels.index(winner)],
                          "alpha": 1.0, "rho": 0.0}
    else:
        cand = next(c for c in search if c["label"] == winner)
        recommendation = {"kind": "rejuvenated" if cand["rho"] > 0 else "fused", "name": winner,
                          "from": labels[searched], "alpha": cand["alpha"], "rho": cand["rho"],
                          "command": _apply_command(cfg, cfg.checkpoints[searched], cand, search)}
    recommendation["probe_reward_end"] = probes[winner]["reward_end"]
    recommendation["probe_reward_end_se"] = probes[winner]["reward_end_se"]
    recommendation["uncertainty"] = uncertainty(probes, winner)
    recommendation["diagnose"] = against_diagnose(winner, entries, probes, recommendation["uncertainty"])
    return recommendation


def _probe_free(cfg: PlanConfig, searched_label: str, entries: dict, search: list[dict]) -> dict:
    """--no-probes: the searched checkpoint fused with the base at α 0.5, which no RL checked here."""
    cand = search[0]
    return {"kind": "fused", "name": cand["label"], "from": searched_label, "alpha": cand["alpha"], "rho": 0.0,
            "command": _apply_command(cfg, cfg.checkpoints[cfg.searched], cand, search), "rule": "fused_last_half",
            "probe_reward_end": None, "probe_reward_end_se": None,
            "uncertainty": {"separated": None, "tied_with": [],
                            "text": f"chosen with no RL probe (--no-probes): the probe-free rule, {searched_label} "
                                    f"fused with the base at α {PROBE_FREE_ALPHA:g}; no RL checked it here "
                                    "(docs/plan.md: what the probes add)"},
            "diagnose": against_diagnose(cand["label"], entries, {}, {})}


def _warnings(cfg: PlanConfig, recommendation: dict, entries: dict, searched_label: str) -> list[str]:
    """Said as warnings too: the probes cannot separate the recommendation; it goes against diagnose; most
    GRPO groups from its start are forecast to carry no signal."""
    warnings = [warn(f"plan: {recommendation['uncertainty']['text']}")] \
        if recommendation["uncertainty"]["separated"] is False else []
    if recommendation["diagnose"]["disagrees"]:
        warnings.append(warn(f"plan: {recommendation['diagnose']['text']}"))
    start = recommendation["name"] if recommendation["name"] in entries else searched_label
    dead = (entries[start].get("groups") or {}).get("dead_share")
    if dead is not None and dead > 0.5:
        warnings.append(warn(f"plan: {dead:.0%} of GRPO groups from {start} are forecast to get one reward for every "
                             f"sample (groups of {cfg.probe.num_generations} at temperature "
                             f"{cfg.probe.temperature:g}): most of an RL step would carry no signal"))
    return warnings


def _candidate(cfg: PlanConfig, sft: str, alpha: float, rho: float, out: str, rhos: list[float] | None = None,
               attribution: str | None = None) -> ApplyConfig:
    """The `rejuv apply` config of one search candidate (a fusion at ρ 0)."""
    return ApplyConfig(base=cfg.base, sft=sft, calib=cfg.calib, out=out, alpha=alpha, rho=rho,
                       rho_grid=rhos if rho > 0 else None, reuse_attribution=attribution if rho > 0 else None,
                       fusion_only=rho == 0.0, max_samples=cfg.max_samples, dtype=cfg.dtype,
                       **passed_on(cfg, ApplyConfig))


def _apply_command(cfg: PlanConfig, sft: str, cand: dict, search: list[dict]) -> str:
    """The command that rebuilds the recommended candidate (its weights are not kept by default); a reset
    candidate reuses the search's attribution, kept in its first reset candidate's folder."""
    first = next((c for c in search if c["rho"] > 0), None)
    reuse = str(Path(cfg.out) / "candidates" / first["label"]) if cand["rho"] > 0 and first else None
    return _candidate(cfg, sft, cand["alpha"], cand["rho"], "OUT").command(reuse=reuse)


def summary_lines(cfg: PlanConfig, plan: dict) -> str:
    """What `rejuv plan` prints: the recommendation, how sure it is, and how each cheap signal ranked."""
    rec = plan["recommendation"]
    how = "as it is" if rec["kind"] == "checkpoint" else \
        f"{rec['kind']} from {rec['from']} (α {rec['alpha']:g}, ρ {rec['rho']:g}): {rec['command']}"
    lines = [f"recommended: {rec['name']} {how}", f"  certainty: {rec['uncertainty']['text']}",
             f"  diagnose: {rec['diagnose']['text']}"]
    lines += [f"  Spearman({name}, probe) = {'n/a' if rho is None else f'{rho:+.2f}'}"
              for name, rho in plan["correlations_with_probe"].items()] if plan["probe"] else []
    return "\n".join([*lines, f"plan: {Path(cfg.out) / 'plan.html'}"])


RECIPE = Recipe(PlanConfig, run_plan, summary_lines)
