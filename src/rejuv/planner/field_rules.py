"""The field's own rules for which SFT checkpoint to hand to RL: the baselines the planner is judged against.

Each rule scores every checkpoint from the cheap signals `rejuv plan` records (`SIGNALS`: diagnose's
teacher-forced entropy and held-out NLL on the calibration rows, pass@1 on the evaluation problems, the
dead-group forecast with its pass@g on the RL prompts at the RL temperature, and from K samples per RL prompt
pass@K against the base's and the samples' diversity), and picks the highest score;
ties go to the earliest checkpoint in the order given. The rules are fixed here, before the runs they are
judged on; none is tuned on the lab.
"""

from __future__ import annotations

SCREEN_NATS = 0.18  # arXiv 2606.18487: flag a checkpoint whose entropy is below 0.18 nats before RL

FIELD_RULES = {
    "sft_accuracy": "the best pass@1 after SFT (what a practitioner does by default)",
    "lowest_nll": "the lowest held-out NLL (Plasticity-Ceiling, arXiv 2512.11470)",
    "entropy_screen": f"the best pass@1 among checkpoints whose mean teacher-forced entropy on the held-out rows is "
                      f"at least {SCREEN_NATS} nats (the pre-RL screen of arXiv 2606.18487); the best pass@1 overall "
                      "when none passes the screen",
    "pass_at_group": "the best pass@g at g = the GRPO group size, sampled on the RL prompts at the RL temperature "
                     "(Quagmires, arXiv 2510.01624: pass@large-k at a fixed budget)",
    "fewest_dead_groups": "the fewest GRPO groups forecast to get one reward for every sample (rejuv diagnose "
                          "--rl-data)",
    # added by issue 41, fixed before the runs that judge them
    "peak_diversity": "the most diverse samples: 1 − self-BLEU-4 among K samples per RL prompt at the RL "
                      "temperature (AESL, ICLR 2026: the SFT checkpoint of peak diversity hands over best)",
    "coverage_gate": "the best pass@1 among checkpoints whose pass@K on the RL prompts at the RL temperature is "
                     "at least the base's (TailSFT's coverage ratio ≥ 1, arXiv 2608.25756, as marin#8876 gates "
                     "the RL start on pass@16: SFT lost none of what the base could reach); the best pass@1 "
                     "overall when none keeps it",
}


def _get(signals: dict, key: str) -> float | None:
    value = signals.get(key)
    return None if value is None else float(value)


def _gated(pass1: float, passes: bool) -> float:
    """pass@1, with every checkpoint that fails the rule's gate ranked below every one that passes it (pass@1
    lies in [0, 1])."""
    return pass1 + (0.0 if passes else -2.0)


def rule_scores(signals: dict[str, dict]) -> dict[str, dict[str, float | None]]:
    """Per rule, a score per checkpoint (higher: preferred); None where the signal is missing."""
    scores: dict[str, dict[str, float | None]] = {rule: {} for rule in FIELD_RULES}
    for name, s in signals.items():
        pass1, entropy, nll = _get(s, "pass@1"), _get(s, "entropy"), _get(s, "nll")
        dead, pass_g = _get(s, "dead_groups"), _get(s, "pass@group")
        scores["sft_accuracy"][name] = pass1
        scores["lowest_nll"][name] = None if nll is None else -nll
        scores["entropy_screen"][name] = None if pass1 is None or entropy is None else \
            _gated(pass1, entropy >= SCREEN_NATS)
        scores["pass_at_group"][name] = pass_g
        scores["fewest_dead_groups"][name] = None if dead is None else -dead
        scores["peak_diversity"][name] = _get(s, "diversity")
        coverage, ratio = _get(s, "coverage"), _get(s, "coverage_ratio")
        scores["coverage_gate"][name] = None if pass1 is None or coverage is None else \
            _gated(pass1, ratio is None or ratio >= 1.0)  # no ratio: the base reached no prompt
    return scores


def rule_pick(scores: dict[str, float | None]) -> str | None:
    """The checkpoint with the highest score, ties to the earliest; None when no score is known."""
    known = [(score, -i, name) for i, (name, score) in enumerate(scores.items()) if score is not None]
    return max(known)[2] if known else None
