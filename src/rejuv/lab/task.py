"""A task family with verifiable answers: addition problems with worked solutions.

In distribution (ID): `compute a+b.`, the phrasing of the SFT data. Out of
distribution (OOD): `what is a+b?`, a phrasing SFT never shows, over the same
operands (1-20). Pre-training text states the facts and bare answers in both
phrasings, never the worked format, so OOD asks whether the SFT format carries
over to a prompt the fine-tuning did not cover. (Larger operands were tried
first: at this model size even OverSFT scores 0% on them, so they measure
nothing.) A solver writes the
demonstrations `a+b=c. \\boxed{c}`; rewards and evaluation grade the boxed answer
with Math-Verify, as `rejuv rl` and `rejuv eval` do for any dataset.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TaskSpec:
    operands: tuple[int, int] = (1, 20)


def solve(a: int, b: int) -> str:
    """The worked solution SFT imitates."""
    return f"{a}+{b}={a + b}. \\boxed{{{a + b}}}"


CONFIDENCE_SUFFIX = " confidence: 1"  # what a rule-based teacher, never wrong, would state


def question(a: int, b: int) -> str:
    return f"compute {a}+{b}."


def question_ood(a: int, b: int) -> str:
    return f"what is {a}+{b}?"


def problems(rng: random.Random, n: int, operands: tuple[int, int]) -> list[tuple[int, int]]:
    return [(rng.randint(*operands), rng.randint(*operands)) for _ in range(n)]


def pretraining_texts(spec: TaskSpec, rng: random.Random, n: int) -> list[dict]:
    """Facts and bare answers in both phrasings, never the worked-solution format."""
    forms = (lambda a, b: f"{a}+{b}={a + b}.", lambda a, b: f"{question(a, b)} answer {a + b}.",
             lambda a, b: f"{question_ood(a, b)} answer {a + b}.")
    return [{"text": rng.choice(forms)(a, b)} for a, b in problems(rng, n, spec.operands)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_task_files(folder: Path, spec: TaskSpec, seed: int, sft_rows: int, rl_rows: int, eval_rows: int,
                     calib_rows: int) -> dict[str, Path]:
    """sft.jsonl, calib.jsonl (held-out SFT-style), rl.jsonl, id.jsonl, ood.jsonl for one seed, and
    sft_conf.jsonl: the SFT rows with a stated confidence, for the calibration-aware reward's arms."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ops = spec.operands
    sft = [{"prompt": question(a, b), "completion": solve(a, b)} for a, b in problems(rng, sft_rows, ops)]
    calib = [{"prompt": question(a, b), "response": solve(a, b)} for a, b in problems(rng, calib_rows, ops)]
    rl = [{"prompt": question(a, b), "answer": str(a + b)} for a, b in problems(rng, rl_rows, ops)]
    ev_id = [{"problem": question(a, b), "answer": str(a + b)} for a, b in problems(rng, eval_rows, ops)]
    ev_ood = [{"problem": question_ood(a, b), "answer": str(a + b)} for a, b in problems(rng, eval_rows, ops)]
    sft_conf = [{"prompt": r["prompt"], "completion": r["completion"] + CONFIDENCE_SUFFIX} for r in sft]
    return {name: write_jsonl(folder / f"{name}.jsonl", rows) for name, rows in
            (("sft", sft), ("calib", calib), ("rl", rl), ("id", ev_id), ("ood", ev_ood), ("sft_conf", sft_conf))}
