"""One seed of the lab, step by step: the base it starts from, SFT at ModSFT's and OverSFT's epochs (and the
alternatives' SFT), α and ρ by the rules, the fused and rejuvenated starts, the same GRPO run from every arm,
what each run changed, the evaluations before and after RL, the diagnosis of the starts (with their
dead-group forecast), and for the planner preset its check. Each step calls the function the CLI calls
(`run_sft`, `run_apply`, `run_rl`, `run_eval`, `run_diagnose`) with its recipe's config, and is skipped when
its output is there as its step left it (`lab/steps.py`)."""

from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from rejuv.errors import collected_warnings, warn
from rejuv.evaluation.kept import write_atomic
from rejuv.io.jsonl import strict_dumps, write_jsonl
from rejuv.io.output import mark_written
from rejuv.lab.presets import Preset, diagnose_dir
from rejuv.lab.rules import run_rules
from rejuv.lab.steps import Steps, log
from rejuv.lab.task import pretraining_texts, write_task_files
from rejuv.lab.world import build_base_model
from rejuv.recipes.apply import ApplyConfig, run_apply
from rejuv.recipes.diagnose import DiagnoseConfig, run_diagnose
from rejuv.recipes.eval import EvalConfig, run_eval
from rejuv.recipes.rl import RLRecipeConfig, run_rl
from rejuv.recipes.sft import SFTRecipeConfig, run_sft
from rejuv.train.common import epoch_dir_name

CONF_EXTRA = 16
FORECAST_PROMPTS = 64  # RL prompts each arm samples a group of, for its dead-group forecast


def _completion_length(arm: str, p: Preset) -> int:
    return p.max_completion_length + (CONF_EXTRA if arm in ("conf", "conf_brier") else 0)


def _rl_options(arm: str, p: Preset, files: dict) -> dict:
    """Options of the arm's GRPO run beyond the shared ones."""
    if arm == "chord_mu":
        return {"chord_data": str(files["sft"]), "chord_mu_peak": 0.9, "chord_mu_valley": 0.05,
                "chord_mu_decay_steps": max(1, p.rl_steps - 1)}  # the last step at the valley
    if arm == "chord_phi":
        return {"chord_data": str(files["sft"]), "chord_mu_peak": 0.1, "chord_mu_valley": 0.1, "chord_phi": True}
    if arm == "oversft_filter":
        return {"filter_groups": True}
    if arm == "conf_brier":
        return {"rewards": [*p.rewards, "brier"]}
    return {}


def build_base(out: Path, p: Preset, step: Steps) -> Path:
    """The pre-trained base: facts, bare answers and worked chains in every form. Cached in out/base/model."""
    root = out / "base"
    init, final = root / "init", root / "model"

    def pretrain() -> None:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(init, ignore_errors=True)
        build_base_model(init, p.hidden, p.layers, seed=0)
        corpus = write_jsonl(root / "pretrain.jsonl", pretraining_texts(p.task, random.Random(12345), p.pretrain_texts))
        run_sft(SFTRecipeConfig(model=str(init), data=str(corpus), out=str(root / "pretrain"),
                                save_epochs=[p.pretrain_epochs], learning_rate=p.pretrain_lr, per_device_batch_size=32,
                                max_length=64, seed=0, overwrite=True, progress=False, trl_args={"logging_steps": 50}))
        (root / "pretrain" / epoch_dir_name(p.pretrain_epochs)).rename(final)

    step(out, final, f"pre-training the base ({p.pretrain_texts} texts × {p.pretrain_epochs} epochs)", pretrain,
         also=(init, root / "pretrain", root / "pretrain.jsonl"))
    return final


SCREEN_WARNINGS = {"a start below the entropy floor": "entropy screen: the start's entropy is",
                   "entropy halved early in GRPO": "entropy screen: entropy fell from",
                   "no entropy logged to watch": "entropy screen: the trainer logged no entropy"}


def say_what_the_screen_flagged(seed: int, warned: dict[str, list[str]]) -> None:
    """One line for the entropy screen's warnings over a seed's GRPO runs, which the lab expects (its OverSFT
    arm is a collapsed start on purpose): which starts it flagged, and for what. Any other warning is shown
    as it came."""
    parts = []
    for kind, words in SCREEN_WARNINGS.items():
        flagged = []
        for arm, found in warned.items():
            hit = next((w for w in found if words in w), None)
            if hit is not None:
                entropy = re.search(r"is ([0-9.]+) nats", hit) if kind == "a start below the entropy floor" else None
                flagged.append(f"{arm} ({entropy.group(1)} nats)" if entropy else arm)
        if flagged:
            parts.append(f"{kind}: {', '.join(flagged)}")
    for found in warned.values():
        for w in found:
            if not any(words in w for words in SCREEN_WARNINGS.values()):
                warn(w)
    if parts:
        log(f"seed {seed}: the entropy screen (arXiv 2606.18487) flagged " + "; ".join(parts)
            + " (the report judges the screen as a hand-off rule)")


def sft_step(base: Path, files: dict, p: Preset, seed: int, folder: Path, loss: str, epochs: list[float],
             data: str = "sft"):
    """The work of an SFT step of the lab: `rejuv sft` from the base, saving `epochs`."""
    return lambda: run_sft(SFTRecipeConfig(
        model=str(base), data=str(files[data]), out=str(folder), loss=loss, save_epochs=epochs,
        learning_rate=p.sft_lr, per_device_batch_size=p.sft_batch, max_length=96, seed=seed, progress=False,
        trl_args={"logging_steps": 25}))


@dataclass
class SeedRun:
    """What a seed's arms left for the planner's stage: each arm's start, the seed's data files, and the arms'
    GRPO runs that are the planner's own full runs from the same start (same settings)."""

    starts: dict[str, str]
    files: dict
    plain: dict[str, Path]


@dataclass
class _Seed:
    """One seed's run: where it writes, what it starts from, and the step runner that skips finished work."""

    out: Path
    base: Path
    p: Preset
    seed: int
    arms: tuple[str, ...]
    step: Steps
    files: dict

    @property
    def root(self) -> Path:
        return self.out / f"seed-{self.seed}"

    def apply_config(self, sft: Path, out: Path, alpha: float, rho: float, **more) -> ApplyConfig:
        p = self.p
        return ApplyConfig(base=str(self.base), sft=str(sft), calib=str(self.files["calib"]), out=str(out),
                           alpha=alpha, rho=rho, fusion_only=not rho, max_samples=p.calib_rows,
                           targets_per_sample=p.targets_per_sample, seed=self.seed, device=p.device, progress=False,
                           **more)


def run_seed(out: Path, base: Path, p: Preset, seed: int, arms: tuple[str, ...], step: Steps) -> SeedRun:
    """Every arm for one seed, in stages: the starts, a GRPO run from each, what each run changed, the
    evaluations before and after RL, the diagnosis of the starts."""
    root = out / f"seed-{seed}"
    files = write_task_files(root / "data", p.task, seed, p.sft_rows, p.rl_rows, p.eval_rows, p.calib_rows)
    mark_written(out, "demo", files.values())
    run = _Seed(out, base, p, seed, arms, step, files)
    ckpt = _starts(run)
    _grpo_runs(run, ckpt)
    for arm in arms:
        step(out, root / "updates" / f"{arm}.json", f"seed {seed}: what GRPO changed from {arm}",
             lambda a=arm: write_update(root / "updates" / f"{a}.json", ckpt[a], root / "rl" / a, base))
    _evaluations(run, ckpt)
    _diagnosis(run, ckpt)
    plain = {str(ckpt[a]): root / "rl" / a for a in arms if not _rl_options(a, p, files)
             and _completion_length(a, p) == p.max_completion_length}
    return SeedRun({a: str(ckpt[a]) for a in arms}, files, plain)


def _starts(run: _Seed) -> dict[str, Path]:
    """Each arm's start: SFT at ModSFT's and OverSFT's epochs (and the alternatives' SFT), then α and ρ by the
    rules and the fused, rejuvenated and randomly reset starts they give."""
    out, root, p, seed, arms, step = run.out, run.root, run.p, run.seed, run.arms, run.step

    def sft(folder: Path, loss: str, epochs: list[float], data: str = "sft"):
        return sft_step(run.base, run.files, p, seed, folder, loss, epochs, data)

    saved = [p.mod_epochs, p.over_epochs]
    step(out, root / "sft", f"seed {seed}: SFT, saving epochs {saved}", sft(root / "sft", "nll", saved))
    ckpt = {"modsft": root / "sft" / epoch_dir_name(p.mod_epochs),
            "oversft": root / "sft" / epoch_dir_name(p.over_epochs)}
    for arm, loss in (("dft", "dft"), ("pear", "pear")):
        if arm in arms:
            step(out, root / arm, f"seed {seed}: {loss.upper()} SFT for {p.over_epochs} epochs",
                 sft(root / arm, loss, [p.over_epochs]))
            ckpt[arm] = root / arm / epoch_dir_name(p.over_epochs)
    if {"conf", "conf_brier"} & set(arms):
        step(out, root / "sft_conf", f"seed {seed}: SFT with stated confidence for {p.over_epochs} epochs",
             sft(root / "sft_conf", "nll", [p.over_epochs], data="sft_conf"))
        ckpt["conf"] = ckpt["conf_brier"] = root / "sft_conf" / epoch_dir_name(p.over_epochs)
    for arm, start in (("chord_mu", "modsft"), ("chord_phi", "modsft"), ("oversft_filter", "oversft")):
        ckpt[arm] = ckpt[start]  # same starting point; the arm differs in its RL run
    if {"oversft_fusion", "oversft_rejuv", "modsft_rejuv", "oversft_random"} & set(arms):
        ckpt.update(_rejuvenated_starts(run, ckpt))
    return ckpt


def _rejuvenated_starts(run: _Seed, ckpt: dict[str, Path]) -> dict[str, Path]:
    """α and ρ by the rules on calibration problems (the fused and rejuvenated OverSFT), and the same α and ρ
    applied to ModSFT, or with a random reset of the same size."""
    out, root, seed, arms, step = run.out, run.root, run.seed, run.arms, run.step
    rules_dir = root / "rules"
    step(out, rules_dir / "rules.json", f"seed {seed}: alpha and rho by the rules, on calibration problems",
         lambda: run_rules(rules_dir, run.base, ckpt["oversft"], run.files, run.p, seed), covers=rules_dir)
    rules = json.loads((rules_dir / "rules.json").read_text())
    alpha, rho = rules["alpha"]["chosen"], rules["rho"]["chosen"]
    starts = {"oversft_fusion": rules_dir / rules["fusion"], "oversft_rejuv": rules_dir / rules["rejuvenation"]}
    if "modsft_rejuv" in arms:
        config = run.apply_config(ckpt["modsft"], root / "modsft_rejuv", alpha, rho)
        step(out, root / "modsft_rejuv", f"seed {seed}: ModSFT with the rules' alpha and rho",
             lambda c=config: run_apply(c))
        starts["modsft_rejuv"] = root / "modsft_rejuv"
    if "oversft_random" in arms:
        config = run.apply_config(ckpt["oversft"], root / "random_reset", alpha, rho, random_reset=bool(rho),
                                  reuse_attribution=str(starts["oversft_rejuv"]) if rho else None)
        step(out, root / "random_reset", f"seed {seed}: OverSFT with the rules' alpha and a random reset of "
             "the rules' rho's size", lambda c=config: run_apply(c))
        starts["oversft_random"] = root / "random_reset"
    return starts


def _grpo_runs(run: _Seed, ckpt: dict[str, Path]) -> None:
    """The same GRPO run from every arm's start (an arm may add its own options), then one line for what the
    entropy screen flagged."""
    p, root, warned = run.p, run.root, {}
    for arm in run.arms:
        config = RLRecipeConfig(
            model=str(ckpt[arm]), data=str(run.files["rl"]), out=str(root / "rl" / arm), max_steps=p.rl_steps,
            seed=run.seed, progress=False, **{**p.grpo_settings(), "max_completion_length": _completion_length(arm, p),
                                              **_rl_options(arm, p, run.files)})
        with collected_warnings() as warned[arm]:
            run.step(run.out, root / "rl" / arm, f"seed {run.seed}: GRPO from {arm} ({p.rl_steps} steps)",
                     lambda c=config: run_rl(c))
    say_what_the_screen_flagged(run.seed, warned)


def _evaluations(run: _Seed, ckpt: dict[str, Path]) -> None:
    """One evaluation per arm and stage (sampling is seeded per checkpoint, so this equals one batched run),
    so that arms can be added to a finished demo without redoing the others."""
    p, root = run.p, run.root
    for arm in run.arms:
        for stage, path in (("before", ckpt[arm]), ("after", root / "rl" / arm)):
            config = EvalConfig(checkpoints=[str(path)], data=[str(run.files["id"]), str(run.files["ood"])],
                                out=str(root / f"eval_{stage}" / arm), chat_template="never", seed=run.seed,
                                progress=False, **{**p.eval_settings(), "max_new_tokens": _completion_length(arm, p)})
            run.step(run.out, root / f"eval_{stage}" / arm, f"seed {run.seed}: evaluation of {arm} {stage} RL",
                     lambda c=config: run_eval(c))


def _diagnosis(run: _Seed, ckpt: dict[str, Path]) -> None:
    """`rejuv diagnose` of every arm's start, with its dead-group forecast on the RL prompts."""
    p, arms = run.p, run.arms
    config = DiagnoseConfig(base=str(run.base), checkpoints=[str(ckpt[a]) for a in arms], names=list(arms),
                            calib=str(run.files["calib"]), out=str(diagnose_dir(run.root, arms)), seed=run.seed,
                            progress=False, rl_data=str(run.files["rl"]), group_size=p.num_generations,
                            prompts_per_step=p.rl_prompts_per_step, chat_template="never",
                            forecast={"samples": p.num_generations, "max_new_tokens": p.max_completion_length,
                                      "max_problems": FORECAST_PROMPTS})
    run.step(run.out, diagnose_dir(run.root, arms), f"seed {run.seed}: diagnosis of the arms before RL",
             lambda: run_diagnose(config))


def write_update(path: Path, start: Path, result: Path, base: Path) -> None:
    """`rejuv diagnose --reference`'s update figures of one RL run (from `start`, with the base), as JSON."""
    from rejuv.diagnostics.update import update_statistics
    from rejuv.io.reader import Checkpoint

    with Checkpoint(start) as s, Checkpoint(result) as r, Checkpoint(base) as b:
        names = [n for n in s.names() if n in r.tensors and n in b.tensors
                 and s.tensors[n].shape == r.tensors[n].shape == b.tensors[n].shape]
        figures = update_statistics(s, [r], names, base=b)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, strict_dumps(figures) + "\n")  # the step's file is its proof of completion: never half-written
