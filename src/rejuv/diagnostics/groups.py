"""How many GRPO groups will carry no signal, forecast before RL from per-prompt pass rates.

GRPO normalises each reward within a group of g samples of one prompt; a group in which every sample gets
the same reward has zero advantage everywhere and teaches nothing (TRL logs their share during training as
`frac_reward_zero_std`). With a binary reward (right/wrong, as `math_verify`'s ±1), a group of prompt i is
dead when all g samples are right or all are wrong, with probability p_i^g + (1 − p_i)^g, so the expected
share of dead groups over the prompts is

    mean_i [p_i^g + (1 − p_i)^g],

and the expected number of prompts per step that carry signal is P·(1 − that share) for P prompts a step.
From n ≥ g samples per prompt with c_i right, C(c_i, g)/C(n, g) and C(n − c_i, g)/C(n, g) estimate p_i^g and
(1 − p_i)^g without bias (drawing g of the n without replacement, as pass@k does); with n < g the plug-in
(c_i/n)^g is used and said. The forecast counts correctness only: with a reward that also varies within a
group of equal correctness (a Brier term on stated confidence, a format term), TRL's own share (on the summed
reward) counts fewer groups dead; rejuv counts them on the outcome reward then (`dead_groups/outcome`, and the
hard-sample filter drops on it), so the forecast and the measured share count the same thing. With a reward
that is not right/wrong at all the forecast does not apply.

p*(g) = 1 − 2^(−1/g) is the pass rate below which a prompt's group is all wrong more often than not (0.083
for g = 8; arXiv 2606.18487): a checkpoint whose pass@1 sits below it leaves most of its groups dead.
"""

from __future__ import annotations

import math


def p_star(group: int) -> float:
    """The pass rate below which a group of `group` samples is all wrong with probability above one half."""
    return 1.0 - 2.0 ** (-1.0 / group)


def group_forecast(correct: list[int], samples: int, group: int, prompts_per_step: int) -> dict:
    """The dead-group forecast from `correct[i]` right answers among `samples` draws of prompt i."""
    if not correct or samples < 1 or group < 2:
        raise ValueError("the forecast needs prompts, at least one sample per prompt and groups of two or more")
    if samples >= group:
        estimator = "exact: C(c, g)/C(n, g) (unbiased)"
        right = [math.comb(c, group) / math.comb(samples, group) for c in correct]
        wrong = [math.comb(samples - c, group) / math.comb(samples, group) for c in correct]
    else:
        estimator = f"plug-in (c/n)^g: {samples} samples per prompt are fewer than the group size {group}"
        right = [(c / samples) ** group for c in correct]
        wrong = [(1 - c / samples) ** group for c in correct]
    m = len(correct)
    all_right, all_wrong = sum(right) / m, sum(wrong) / m
    dead = all_right + all_wrong
    pass1 = sum(correct) / (m * samples)
    return {"group_size": group, "prompts": m, "samples_per_prompt": samples, "estimator": estimator,
            "dead_share": dead, "all_wrong_share": all_wrong, "all_right_share": all_right,
            "prompts_per_step": prompts_per_step, "signal_prompts_per_step": prompts_per_step * (1.0 - dead),
            "pass@1": pass1, "pass@group": 1.0 - all_wrong, "p_star": p_star(group),
            "below_p_star": pass1 < p_star(group)}


def measured_dead_share(rows: list[dict], share: float = 0.1) -> float | None:
    """What GRPO measured: the mean share of dead groups over the first `share` of the logged steps (at least
    one step), from plasticity.jsonl rows: on the outcome (`dead_groups_outcome`, logged when other terms shape
    the reward), else TRL's `frac_reward_zero_std`; None when the trainer logged neither. Both count groups
    whose samples are all right or all wrong, like the forecast."""
    key = "dead_groups_outcome" if any(r.get("dead_groups_outcome") is not None for r in rows) else \
        "frac_reward_zero_std"
    values = [r[key] for r in rows if r.get(key) is not None]
    if not values:
        return None
    first = values[: max(1, math.ceil(share * len(values)))]
    return sum(first) / len(first)
