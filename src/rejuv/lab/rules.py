"""The lab's α and ρ, chosen per seed by rules written down before any run (docs/lab.md), on calibration
problems only, never on the benchmarks.

- α: the paper's 0.5, unless fusing OverSFT at 0.5 keeps less than half of OverSFT's calibration pass rate;
  then the smallest α of `ALPHAS` that keeps at least half (the largest, if none does).
- ρ: with that α, the largest value of `RHOS` whose reset keeps at least half of the fusion's calibration
  pass rate; no reset (Rejuvenation = fusion) when none does.

Calibration pass rate: pass@1 over `samples` draws at temperature 0.6 on the calibration problems (the
held-out SFT-style problems whose worked solutions are the calibration rows). Every candidate is a
`rejuv apply` output; the ρ candidates share one attribution pass (`--reuse-attribution`). The chosen
candidates are the fusion and Rejuvenation arms.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from rejuv.errors import collected_warnings
from rejuv.io.output import written_by
from rejuv.io.records import Checked, DamagedRecord, read_json
from rejuv.lab.steps import log
from rejuv.recipes.apply import ApplyConfig, run_apply
from rejuv.recipes.eval import EvalConfig, run_eval

ALPHAS = (0.5, 0.6, 0.7, 0.8, 0.9)
RHOS = (0.0003, 0.001, 0.003, 0.01)
KEEP = 0.5  # share of the reference's calibration pass rate a candidate must keep


def alpha_by_pass_rate(rates: dict[float, float], oversft: float) -> tuple[float, str]:
    """The α rule on measured calibration pass rates (α → rate) and OverSFT's rate."""
    floor = KEEP * oversft
    if rates[0.5] >= floor:
        return 0.5, f"alpha 0.5 (the paper's) keeps {rates[0.5]:.3f} ≥ half of OverSFT's {oversft:.3f}"
    keeping = [a for a in sorted(rates) if rates[a] >= floor]
    if keeping:
        return keeping[0], (f"alpha 0.5 keeps {rates[0.5]:.3f} < half of OverSFT's {oversft:.3f}; the smallest alpha "
                            f"keeping half is {keeping[0]:g} ({rates[keeping[0]]:.3f})")
    largest = max(rates)
    return largest, f"no alpha keeps half of OverSFT's {oversft:.3f}; the largest, {largest:g}, is used"


def rho_by_pass_rate(rates: dict[float, float], fused: float) -> tuple[float, str]:
    """The lab's ρ rule on sampled calibration pass rates (ρ → rate) and the fusion's rate. Not `rejuv apply
    --rho auto` (`method.reset.auto_rho`), which a user runs without sampling: that one reads teacher-forced
    accuracy and the union's size from one attribution pass."""
    keeping = [r for r in sorted(rates) if rates[r] >= KEEP * fused]
    if not keeping:
        return 0.0, (f"no rho keeps half of the fusion's {fused:.3f} (best {max(rates.values()):.3f}): no reset, "
                     "Rejuvenation is the fusion")
    return keeping[-1], f"the largest rho keeping half of the fusion's {fused:.3f} is {keeping[-1]:g} " \
                        f"({rates[keeping[-1]]:.3f})"


def candidate(alpha: float, rho: float = 0.0) -> str:
    """The folder name of a rule candidate: the fusion at α, or its reset at ρ."""
    return f"alpha{alpha:g}-rho{rho:g}" if rho else f"alpha{alpha:g}"


def _kept(out: Path, command: str) -> bool:
    """Whether an interrupted rules step left a finished `command` output in `out`; anything else there (a
    folder another tool wrote into this demo's own tree) is removed and made again."""
    if written_by(out) == command:
        return True
    if out.exists():
        shutil.rmtree(out)
    return False


def _first_pass_rate(path: Path) -> float:
    checked = Checked(path, "evaluation report")
    results = checked.get(checked.of(read_json(path, "evaluation report"), "an object", ""), "results", "a list")
    if not results:
        checked.fail("['results']", "no result")
    return checked.get(checked.of(results[0], "an object", "['results'][0]"), "pass@1", "a number", "['results'][0]")


def _pass_rate(model: Path, problems: Path, out: Path, samples: int, tokens: int, seed: int) -> float:
    if _kept(out, "eval"):
        try:
            return _first_pass_rate(out / "eval.json")
        except DamagedRecord:
            shutil.rmtree(out)
    run_eval(EvalConfig(checkpoints=[str(model)], data=[str(problems)], out=str(out), samples=samples,
                        max_new_tokens=tokens, chat_template="never", seed=seed, progress=False))
    return _first_pass_rate(out / "eval.json")


def _applied(out: Path, config: ApplyConfig) -> Path:
    if not _kept(out, "apply"):
        run_apply(config)
    return out


def _say_what_the_candidates_warned(seed: int, warned: dict[float, list[str]]) -> None:
    """One line for the warnings of a grid of candidates, which a grid is expected to give (its largest ρ
    resets much): which ρ warned of what; each candidate's manifest keeps its own words."""
    kinds = {"a union above max_reset_share": "the reset covers",
             "more calibration accuracy lost than fusion lost": "the reset removed more calibration accuracy"}
    parts = []
    for kind, words in kinds.items():
        rhos = [f"{r:g}" for r, found in sorted(warned.items()) if any(words in w for w in found)]
        if rhos:
            parts.append(f"{kind} at rho {', '.join(rhos)}")
    if parts:
        log(f"seed {seed}: the rules' rho candidates warned of " + "; ".join(parts)
            + " (each candidate's rejuvenation.json holds its warnings)")


def run_rules(folder: Path, base: Path, oversft: Path, files: dict, p, seed: int) -> dict:
    """Apply the rules for one seed in `folder` (candidates, their evaluations, rules.json); returns rules.json."""
    record = folder / "rules.json"
    folder.mkdir(parents=True, exist_ok=True)
    problems, tokens = files["calib_problems"], p.max_completion_length

    def rate(model: Path, name: str) -> float:
        return _pass_rate(model, problems, folder / "eval" / name, p.rule_samples, tokens, seed)

    common = dict(base=str(base), sft=str(oversft), calib=str(files["calib"]), max_samples=p.calib_rows,
                  targets_per_sample=p.targets_per_sample, seed=seed, device=p.device, progress=False)
    reference = rate(oversft, "oversft")
    alphas = {a: rate(_applied(folder / candidate(a), ApplyConfig(out=str(folder / candidate(a)), alpha=a,
                                                                   fusion_only=True, **common)), candidate(a))
              for a in ALPHAS}
    alpha, alpha_text = alpha_by_pass_rate(alphas, reference)
    attribution = None
    rhos, warned = {}, {}
    for rho in sorted(RHOS, reverse=True):  # the first (largest) runs the attribution for the whole grid
        out = folder / candidate(alpha, rho)
        with collected_warnings() as found:
            _applied(out, ApplyConfig(out=str(out), alpha=alpha, rho=rho, rho_grid=list(RHOS),
                                      reuse_attribution=attribution, **common))
        warned[rho] = found
        attribution = attribution or str(out)
        rhos[rho] = rate(out, out.name)
    _say_what_the_candidates_warned(seed, warned)
    rho, rho_text = rho_by_pass_rate(rhos, alphas[alpha])
    result = {"oversft_pass_rate": reference,
              "alpha": {"candidates": {f"{a:g}": r for a, r in alphas.items()}, "chosen": alpha, "rule": alpha_text},
              "rho": {"candidates": {f"{r:g}": v for r, v in rhos.items()}, "chosen": rho, "rule": rho_text},
              "fusion": candidate(alpha), "rejuvenation": candidate(alpha, rho),
              "samples": p.rule_samples, "problems": len(problems.read_text().splitlines())}
    record.write_text(json.dumps(result, indent=2) + "\n")
    return result
