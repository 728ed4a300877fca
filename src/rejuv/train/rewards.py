"""Reward functions for `rejuv rl`, registered by name.

Each has TRL's reward signature: `f(completions, **columns) -> list[float]`,
where `completions` are strings (or chat message lists) and the dataset's other
columns (here `answer`) arrive as keyword lists.

- `math_verify`: +1 if Math-Verify finds the last \\boxed{} answer equal to
  `answer` (to one of them, for a list: any of), else −1 (the paper's reward).
- `exact_match`: +1 if the last \\boxed{} answer (or, without one, the last
  line) equals `answer` after light normalisation, else −1.
- `format`: +1 if the completion ends its reasoning with exactly one
  \\boxed{...} answer, else 0 (a shaping term; give it a small weight).
- `brier`: −(c − 1[correct])² for the completion's stated `confidence: c`
  (correct as graded by Math-Verify), −1 without a statement: a proper
  scoring rule, as a second reward beside `math_verify` (confidence.py).

`--reward module:function` loads any other function with the same signature.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from rejuv.errors import RejuvError
from rejuv.evaluation.grading import grade_many
from rejuv.evaluation.verl_reward import last_boxed, normalize_answer

RewardFn = Callable[..., list[float]]
REWARDS: dict[str, RewardFn] = {}
_GRADED: set[str] = set()  # rewards that compare against the row's `answer`
# rewards that are the outcome itself, right (> 0) or wrong: what a GRPO group is dead on, whatever shaping
# terms (format, Brier) are added beside it
OUTCOME: set[str] = set()


def register_reward(name: str, needs_answer: bool = True, outcome: bool = False) -> Callable[[RewardFn], RewardFn]:
    def wrap(fn: RewardFn) -> RewardFn:
        fn.__name__ = name  # TRL logs rewards under the function's name
        REWARDS[name] = fn
        if needs_answer:
            _GRADED.add(name)
        if outcome:
            OUTCOME.add(name)
        return fn
    return wrap


def outcome_index(names: list[str]) -> int | None:
    """The position of the first outcome reward among `names`, when another reward shapes it (a Brier or format
    term): then a group's signal is judged on the outcome, not on the summed reward. None otherwise."""
    first = next((i for i, name in enumerate(names) if name in OUTCOME), None)
    return first if first is not None and len(names) > 1 else None


def reward_names() -> list[str]:
    """The registered rewards, as the CLI lists them."""
    return sorted(REWARDS)


def needs_answer(names: list[str]) -> bool:
    """Whether any of these rewards grades against an `answer` column (a module:function reward may; the
    reward itself says so when it runs without one)."""
    return any(name in _GRADED for name in names)


def completion_text(completion) -> str:
    """TRL passes plain strings, or for chat prompts a list of messages."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content", "") for m in completion if isinstance(m, dict))


def _answers(answer, n: int) -> list[str | list[str]]:
    """The gold answers of a batch: text, or a list of texts any of which counts (rejuv.data.rows.gold_answer)."""
    if answer is None:
        raise RejuvError("this reward needs an 'answer' column in the RL dataset")
    return [[str(x) for x in a] if isinstance(a, list | tuple) else str(a) for a in answer][:n]


@register_reward("math_verify", outcome=True)
def math_verify_reward(completions, answer=None, **_) -> list[float]:
    texts = [completion_text(c) for c in completions]
    return [1.0 if ok else -1.0 for ok in grade_many(_answers(answer, len(texts)), texts)]


@register_reward("exact_match", outcome=True)
def exact_match_reward(completions, answer=None, **_) -> list[float]:
    rewards = []
    for completion, gold in zip(completions, _answers(answer, len(completions)), strict=True):
        text = completion_text(completion)
        boxed = last_boxed(text)
        candidate = boxed if boxed is not None else (text.strip().splitlines() or [""])[-1]
        golds = gold if isinstance(gold, list) else [gold]
        rewards.append(1.0 if any(normalize_answer(candidate) == normalize_answer(g) for g in golds) else -1.0)
    return rewards


@register_reward("format", needs_answer=False)
def format_reward(completions, **_) -> list[float]:
    rewards = []
    for completion in completions:
        text = completion_text(completion)
        ok = text.count("\\boxed{") == 1 and last_boxed(text) is not None
        rewards.append(1.0 if ok else 0.0)
    return rewards


@register_reward("brier")
def brier_reward(completions, answer=None, **_) -> list[float]:
    from rejuv.evaluation.confidence import brier_reward_values, stated_confidence

    texts = [completion_text(c) for c in completions]
    correct = grade_many(_answers(answer, len(texts)), texts)
    return brier_reward_values([stated_confidence(t) for t in texts], correct)


def resolve_reward(name: str) -> RewardFn:
    """A registered name, or `package.module:function`."""
    if name in REWARDS:
        return REWARDS[name]
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            fn = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise RejuvError(f"reward {name!r} cannot be imported ({exc})") from exc
        if not callable(fn):
            raise RejuvError(f"reward {name!r} is not a function")
        return fn
    raise RejuvError(f"unknown reward {name!r}; registered: {', '.join(sorted(REWARDS))} "
                     "(or give module:function)")
