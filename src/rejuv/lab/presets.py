"""The lab's presets: the world's sizes, the training and RL budgets, and the seeds.

`small` (the default) was sized to run the four default arms over three seeds within 30 minutes on two CPU
cores (26 min on the machine of 11-26; 35 and 55-60 min on two machines of 12-02, with the same code and
numbers: the machines differ, so the world is kept and its seeds pool); `make demo` runs one of its twelve
committed seeds and reads the others from their records;
`planner` adds the check of `rejuv plan` against full RL over six seeds; `smoke` checks the plumbing and
states no claims; `full` is sized for a GPU.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from rejuv.lab.task import TaskSpec

ARMS = ("modsft", "oversft", "oversft_fusion", "oversft_rejuv", "dft", "modsft_rejuv",
        "chord_mu", "chord_phi", "pear", "oversft_filter", "conf", "conf_brier", "oversft_random")
DEFAULT_ARMS = ARMS[:4]  # what the premise and the paper's claims need; `--arms` adds the others
# - dft: the paper's DFT baseline (OverSFT's epochs with the DFT loss);
# - modsft_rejuv: ModSFT fused and reset with the α and ρ the rules chose on OverSFT;
# - chord_mu / chord_phi: RL from ModSFT with the SFT rows mixed in (CHORD-µ: µ 0.9 → 0.05 across the RL
#   steps instead of the paper's 200, which this budget does not have; CHORD-φ: constant µ 0.1 with φ);
# - pear: SFT for OverSFT's epochs with PEAR's token weights (the data comes from a rule: no behaviour model);
# - oversft_filter: RL from OverSFT with the hard-sample filter;
# - conf / conf_brier: SFT for OverSFT's epochs on rows that end with "confidence: 1" (the rule is never
#   wrong), then RL with the task reward alone / plus the Brier reward on the stated confidence; both get
#   CONF_EXTRA more completion tokens, for the statement;
# - oversft_random: the control for the attribution: OverSFT fused at the rules' α, then as many neurons reset
#   in each module (layer, kind) as the rules' ρ reset, drawn at random with the seed (`rejuv apply
#   --random-reset`, reusing the Rejuvenation arm's attribution record for the counts).


@dataclass
class Preset:
    hidden: int
    layers: int
    pretrain_texts: int
    pretrain_epochs: float
    pretrain_lr: float
    sft_rows: int
    sft_batch: int
    mod_epochs: float
    over_epochs: float
    sft_lr: float
    calib_rows: int
    rl_rows: int
    rl_steps: int
    rl_lr: float
    rl_prompts_per_step: int
    num_generations: int
    max_completion_length: int
    eval_rows: int
    samples: int
    targets_per_sample: int
    rule_samples: int  # draws per calibration problem for the α/ρ rules
    task: TaskSpec = field(default_factory=TaskSpec)
    seeds: list[int] = field(default_factory=lambda: [0])
    rewards: list[str] = field(default_factory=lambda: ["math_verify"])
    device: str = "cpu"
    claims: bool = True  # False: a plumbing check that states no claims
    # planner check (`rejuv plan` over these SFT epochs, then full RL from each); [] skips it
    plan_epochs: list[float] = field(default_factory=list)
    plan_probe_steps: int = 10
    plan_alphas: list[float] = field(default_factory=lambda: [0.5, 0.6, 0.7, 0.8, 0.9])
    plan_rhos: list[float] = field(default_factory=lambda: [0.0, 0.001])
    dev_seeds: list[int] = field(default_factory=list)  # the planner's rule is chosen on these, judged on the rest
    # The planner's rule, fixed in advance (chosen on the development seeds of an earlier run): every seed of
    # this run is then a test seed.
    planner_rule: str | None = None

    def grpo_settings(self) -> dict:
        """The `rejuv rl` options every GRPO run of the lab shares: the arms', the planner's probes and its
        full runs (so a start the arms and the planner share has one run)."""
        return {"rewards": list(self.rewards), "learning_rate": self.rl_lr, "num_generations": self.num_generations,
                "per_device_batch_size": self.rl_prompts_per_step * self.num_generations,
                "max_completion_length": self.max_completion_length}

    def eval_settings(self) -> dict:
        """The `rejuv eval` options every evaluation of the lab shares."""
        return {"samples": self.samples, "max_new_tokens": self.max_completion_length}


_SMALL = dict(hidden=128, layers=4, pretrain_texts=8000, pretrain_epochs=4, pretrain_lr=1e-3, sft_rows=400,
              sft_batch=8, mod_epochs=2, over_epochs=32, sft_lr=1e-3, calib_rows=64, rl_rows=2000, rl_steps=500,
              rl_lr=2e-4, rl_prompts_per_step=4, num_generations=8, max_completion_length=40, eval_rows=200, samples=4,
              targets_per_sample=2, rule_samples=4, seeds=[0, 1, 2])
PRESETS = {
    # Checks the plumbing in about a minute on 2 cores; states no claims.
    "smoke": Preset(hidden=32, layers=2, pretrain_texts=600, pretrain_epochs=1, pretrain_lr=3e-3, sft_rows=48,
                    sft_batch=16, mod_epochs=1, over_epochs=4, sft_lr=3e-3, calib_rows=8, rl_rows=32, rl_steps=2,
                    rl_lr=2e-4, rl_prompts_per_step=2, num_generations=4, max_completion_length=40, eval_rows=6,
                    samples=2, targets_per_sample=2, rule_samples=1, task=TaskSpec(max=12, sft_max=8, pretrain_pool=40),
                    claims=False),
    # The experiment on 2 CPU cores (10-18 min a seed by machine, BENCHMARKS.md): OverSFT has 16× ModSFT's epochs on the
    # same data.
    "small": Preset(**_SMALL),
    # The small world, then `rejuv plan` over its SFT epochs checked against full RL from each; the planner's
    # rule is chosen on seeds 0-2 and judged on seeds 3-5.
    "planner": Preset(**{**_SMALL, "seeds": [0, 1, 2, 3, 4, 5]}, plan_epochs=[1, 2, 4, 8, 16, 32],
                      plan_probe_steps=25, dev_seeds=[0, 1, 2]),
    # Sized for a GPU (--device cuda): a larger model and data, longer RL.
    "full": Preset(**{**_SMALL, "hidden": 512, "layers": 8, "pretrain_texts": 40000, "sft_rows": 4096,
                      "rl_rows": 8000, "rl_steps": 1000, "rl_prompts_per_step": 8, "eval_rows": 500, "samples": 4,
                      "device": "cuda"}),
}


# Settings only the planner's steps read: a demo may add the planner to a finished one (its steps have their
# own folders), so they are no part of the world. A seed's planner check depends on the first four.
PLANNER_CHECK = ("plan_epochs", "plan_probe_steps", "plan_alphas", "plan_rhos")
PLANNER_ONLY = (*PLANNER_CHECK, "dev_seeds", "planner_rule")


def world_of(settings: dict, numerics: dict) -> dict:
    """What must match for a seed's steps and results to be this run's: the preset's settings except the seeds
    and the planner's, and the CPU numerics (thread count and code path). As JSON reads it back (tuples are
    lists), so a recorded world compares equal."""
    kept = {k: v for k, v in settings.items() if k not in ("seeds", *PLANNER_ONLY)}
    return json.loads(json.dumps({"settings": kept, "numerics": numerics}))


def diagnose_dir(root: Path, arms: tuple[str, ...]) -> Path:
    """Diagnosis compares the arms with each other, so each set of arms has its own (with the dead-group
    forecast on the RL prompts since issue 30: a diagnosis made before it is made again)."""
    return root / ("diagnose-" + hashlib.sha256((",".join(arms) + "|forecast").encode()).hexdigest()[:8])
