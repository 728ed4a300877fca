"""What the planner computes from measurements: candidate grid, cheap scores, probe metrics, ranking.

Pure functions over numbers, so they are tested on small synthetic inputs; the
command (`rejuv.planner.plan`) produces the numbers with diagnose, apply, eval and rl.

- Search score of a fused/rejuvenated candidate, before any RL: the geometric
  mean of the share of the SFT→base entropy gap it recovers (clipped to [0, 1])
  and the share of the SFT checkpoint's accuracy it keeps. Either at zero gives
  zero: the base model (all entropy, little skill) and a collapsed checkpoint
  (all skill, no entropy) both score low.
- Probe outcome, the planner's ground truth: the mean reward over the last
  quarter of a short GRPO run (at least one step), with its uncertainty: the
  standard error of that mean from the spread of the per-step rewards (steps
  are not independent draws, so this is a floor on the real uncertainty; one
  step gives none), and the completions sampled. The recommendation is the
  candidate with the best outcome (ties: steeper reward slope, then input
  order); it is *separated* from another candidate when the outcomes differ by
  more than `SEPARATION_Z` standard errors of the difference.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from rejuv.diagnostics.groups import measured_dead_share
from rejuv.errors import RejuvError


@dataclass(frozen=True)
class Candidate:
    alpha: float
    rho: float

    @property
    def label(self) -> str:
        return f"alpha{self.alpha:g}-rho{self.rho:g}"


def search_grid(alphas: list[float], rhos: list[float]) -> list[Candidate]:
    """Every (α, ρ) pair except α=1, ρ=0 (that is the checkpoint itself, probed anyway)."""
    for a in alphas:
        if not 0.0 <= a <= 1.0:
            raise RejuvError(f"alpha values must lie in [0, 1], got {a}")
    for r in rhos:
        if not 0.0 <= r < 1.0:
            raise RejuvError(f"rho values must lie in [0, 1), got {r}")
    grid = [Candidate(float(a), float(r)) for a in sorted(set(alphas)) for r in sorted(set(rhos))
            if not (a == 1.0 and r == 0.0)]
    if not grid:
        raise RejuvError("the α/ρ grid is empty (give --alphas below 1 or a --rhos value above 0)")
    return grid


def entropy_recovered(candidate: float, sft: float, base: float) -> float:
    """Share of the entropy the SFT checkpoint lost against the base that the candidate has back, in [0, 1]."""
    gap = base - sft
    if gap <= 0:
        return 0.0  # nothing was lost: nothing to recover
    return min(1.0, max(0.0, (candidate - sft) / gap))


def accuracy_ratio(candidate: float, sft: float) -> float | None:
    """Candidate accuracy over the SFT checkpoint's, as measured (may exceed 1); None when the SFT's is 0."""
    return candidate / sft if sft > 0 else None


def accuracy_kept(candidate: float, sft: float) -> float:
    """The share of the SFT checkpoint's accuracy the candidate keeps, in [0, 1]: a candidate that beats the
    checkpoint keeps all of it (1), not more, so that the score cannot reward accuracy the search was not
    asked to find (pass@1 0.25 against 0.125 once made a candidate with 3% of the entropy back score 0.24)."""
    if sft <= 0:
        return 1.0
    return min(1.0, max(0.0, candidate / sft))


def search_score(recovered: float, kept: float) -> float:
    """The geometric mean of two shares in [0, 1]: never more than either part's larger value, 0 when
    either is 0."""
    return math.sqrt(min(1.0, max(0.0, recovered)) * min(1.0, max(0.0, kept)))


def slope(values: list[float]) -> float | None:
    """Least-squares slope per step of `values` against 0, 1, 2, ...; None for fewer than two values."""
    n = len(values)
    if n < 2:
        return None
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    sxx = sum((i - mean_x) ** 2 for i in range(n))
    return sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values)) / sxx


SEPARATION_Z = 2.0  # ≈ 95% two-sided for a normal difference


def probe_metrics(rows: list[dict], completions_per_step: int | None = None) -> dict:
    """Summary of one probe from its plasticity.jsonl rows (one per optimizer step)."""
    rewards = [r["reward"] for r in rows if r.get("reward") is not None]
    if not rewards:
        raise RejuvError("the probe logged no rewards (did the RL run take any step?)")
    quarter = max(1, len(rewards) // 4)
    end = rewards[-quarter:]
    end_sd = statistics.stdev(end) if len(end) >= 2 else None
    grads = [r["grad_norm"] for r in rows if r.get("grad_norm") is not None]
    updates = [r["update_l2"] for r in rows if r.get("update_l2") is not None]
    entropy = [r["entropy"] for r in rows if r.get("entropy") is not None]
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    return {
        "steps": len(rewards),
        "reward_start": mean(rewards[:quarter]),
        "reward_end": mean(end),
        "reward_end_sd": end_sd,  # spread of the per-step mean reward over the last quarter
        "reward_end_se": None if end_sd is None else end_sd / math.sqrt(len(end)),
        "end_steps": len(end),
        "samples_seen": None if completions_per_step is None else len(rewards) * completions_per_step,
        "end_samples": None if completions_per_step is None else len(end) * completions_per_step,
        "reward_gain": mean(rewards[-quarter:]) - mean(rewards[:quarter]),
        "reward_slope": slope(rewards),
        "grad_to_update": (mean(grads) / mean(updates)) if grads and updates and mean(updates) else None,
        "entropy_start": entropy[0] if entropy else None,
        "entropy_slope": slope(entropy),
        "dead_groups_measured": measured_dead_share(rows),  # GRPO's own share, first 10% of the steps
        "rewards": rewards,
    }


def check_probes_learn(probes: dict[str, dict], rewards: list[str]) -> None:
    """Refuse to rank when every step of every probe got the same mean reward: the probe saw no signal."""
    values = {v for p in probes.values() for v in p["rewards"]}
    if len(values) == 1:
        (value,) = values
        raise RejuvError(
            f"the reward ({', '.join(rewards)}) averaged {value:g} at every step of every RL probe, so the probes "
            "cannot tell the checkpoints apart; check --probe-reward and that --probe-data has answers it can match "
            "(or raise --probe-max-completion-length if completions are cut before the answer)")


def best(outcomes: dict[str, dict]) -> str:
    """Label with the best probe outcome; ties go to the steeper slope, then to the first given."""
    order = list(outcomes)
    return max(order, key=lambda k: (outcomes[k]["reward_end"], outcomes[k]["reward_slope"] or 0.0,
                                     -order.index(k)))


def separated(a: dict, b: dict) -> bool | None:
    """Whether probe `a`'s outcome exceeds `b`'s by more than SEPARATION_Z standard errors of the difference;
    None when either probe has too few end steps to estimate its spread."""
    if a.get("reward_end_se") is None or b.get("reward_end_se") is None:
        return None
    margin = a["reward_end"] - b["reward_end"]
    return margin > SEPARATION_Z * math.hypot(a["reward_end_se"], b["reward_end_se"])


def uncertainty(outcomes: dict[str, dict], winner: str) -> dict:
    """How sure the recommendation is: the candidates the probes cannot tell from `winner`."""
    others = [k for k in outcomes if k != winner]
    verdicts = {k: separated(outcomes[winner], outcomes[k]) for k in others}
    tied = [k for k, v in verdicts.items() if v is not True]
    w = outcomes[winner]
    estimable = w.get("reward_end_se") is not None
    if not others:
        text = "only one candidate was probed"
    elif not estimable:
        text = (f"the probes' last quarter is {w.get('end_steps', 1)} step, so the spread of the outcome cannot be "
                "estimated and no candidate can be separated from another; give --budget-steps 8 or more")
    elif tied:
        text = (f"the probes cannot separate {winner} from {', '.join(tied)}: the outcomes differ by less than "
                f"{SEPARATION_Z:g} standard errors; a longer --budget-steps or a larger --probe-per-device-batch-size "
                "would narrow the errors")
    else:
        text = f"{winner} is ahead of every other candidate by more than {SEPARATION_Z:g} standard errors"
    return {"separated": bool(others) and estimable and not tied, "tied_with": tied if estimable else others,
            "z": SEPARATION_Z, "text": text}


def against_diagnose(winner: str, entries: dict, probes: dict, sure: dict) -> dict:
    """Whether the recommendation hands over a checkpoint `diagnose` flagged as over-trained, and why it did."""
    entry = entries.get(winner)
    if entry is None or not entry["flagged"]:
        flagged = sorted(name for name, e in entries.items() if e["flagged"])
        return {"disagrees": False, "flagged": flagged,
                "text": "diagnose flagged " + (", ".join(flagged) if flagged else "no checkpoint")
                        + f"; the recommendation ({winner}) is not among them"}
    p = probes[winner]
    se = "unknown" if p["reward_end_se"] is None else f"{p['reward_end_se']:.3f}"
    why = "; ".join(entry["signals"].values()) or "entropy below the collapse level"
    return {"disagrees": True, "flagged": sorted(n for n, e in entries.items() if e["flagged"]),
            "text": (f"the recommendation hands {winner} to RL as it is, although diagnose flagged it as "
                     f"over-trained ({why}). Its probe had the best end reward, {p['reward_end']:.3f} "
                     f"(standard error {se}, {p['end_steps']} step(s), {p['samples_seen']} completions in all); "
                     f"{sure['text']}. A short probe measures how fast the reward rises from the start, not how "
                     "far a full RL run goes, which is what over-training costs; weigh the flag, or probe longer.")}
