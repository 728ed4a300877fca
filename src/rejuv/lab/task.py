"""The lab's task: three-operand sums, worked as a chain of two additions, in several equally valid forms.

What each part of the world is for (docs/lab.md):
- **Pre-training** writes every form of the chain uniformly (each addition in either operand order,
  three connectives, two answer forms) over a pool of problems no split uses, plus addition facts up
  to 2·max+max and bare answers. The base therefore knows the forms and the facts, and spreads its
  probability over the alternatives.
- **The SFT teacher has a style**, as a teacher model does: a deterministic, learnable choice per
  problem (larger operand first in each addition, the connective by the size of the first sum, the
  plain `\\boxed{}` answer). Every form it writes is one the base knows; moderate SFT moves the model
  part of the way to the style, over-long SFT collapses onto it.
- **Decontaminated splits**: SFT, calibration, RL, ID and OOD problems are disjoint as unordered
  triples, and none is in the pre-training pool.
- **The benchmarks are harder than the SFT data**: SFT and calibration problems have operands up to
  `sft_max`, RL and the benchmarks up to `max` (the facts for them are in pre-training), as
  competition problems are harder than a math SFT set.
- ID asks in the SFT phrasing (`compute a+b+c.`), OOD in a phrasing SFT never shows
  (`what is a+b+c?`, which pre-training answers bare).
- `\\boxed{` is one token (the char tokenizer adds it), so the format is cheap to keep and few of the
  entropy-gap targets can fall on it; `token_classes` says where they fell.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from rejuv.io.jsonl import write_jsonl

CONNECTIVES = (", then ", "; ", ", so ")
ANSWERS = ("\\boxed{%d}", "the answer is \\boxed{%d}")
CONFIDENCE_SUFFIX = " confidence: 1"  # what a rule-based teacher, never wrong, would state


@dataclass(frozen=True)
class TaskSpec:
    max: int = 40  # operands of RL and benchmark problems: 1..max
    sft_max: int = 25  # operands of SFT and calibration problems: 1..sft_max
    pretrain_pool: int = 400  # problems only pre-training sees


def render(x: int, y: int, u: int, v: int, connective: str, answer: str) -> str:
    return f"{x}+{y}={x + y}{connective}{u}+{v}={u + v}. " + answer % (u + v)


def forms(a: int, b: int, c: int) -> list[str]:
    """Every worked solution of a+b+c the world knows: (a+b)+c, each addition in either order, 3 connectives,
    2 answer forms."""
    s1 = a + b
    return [render(x, y, u, v, conn, ans) for x, y in ((a, b), (b, a)) for u, v in ((s1, c), (c, s1))
            for conn in CONNECTIVES for ans in ANSWERS]


def teacher(a: int, b: int, c: int) -> str:
    """The SFT teacher's style: larger operand first in each addition; `, then ` / `; ` / `, so ` as the first
    sum is below 20 / below 35 / larger; the plain boxed answer."""
    s1 = a + b
    connective = CONNECTIVES[0] if s1 < 20 else CONNECTIVES[1] if s1 < 35 else CONNECTIVES[2]
    return render(max(a, b), min(a, b), max(s1, c), min(s1, c), connective, ANSWERS[0])


def question(a: int, b: int, c: int) -> str:
    return f"compute {a}+{b}+{c}."


def question_ood(a: int, b: int, c: int) -> str:
    return f"what is {a}+{b}+{c}?"


def _triples(top: int) -> list[tuple[int, int, int]]:
    r = range(1, top + 1)
    return [(a, b, c) for a in r for b in r for c in r]


def pretrain_pool(spec: TaskSpec) -> list[tuple[int, int, int]]:
    """The problems only pre-training sees (unordered), the same for every seed."""
    keys = sorted({tuple(sorted(t)) for t in _triples(spec.max)})
    random.Random(4242).shuffle(keys)
    return keys[: spec.pretrain_pool]


def splits(spec: TaskSpec, seed: int, sizes: dict[str, int], small: tuple[str, ...] = ("sft", "calib")
           ) -> dict[str, list[tuple[int, int, int]]]:
    """Disjoint problems (as unordered triples) per split, none in the pre-training pool; the `small` splits
    keep every operand within `sft_max`."""
    triples = _triples(spec.max)
    random.Random(seed).shuffle(triples)
    seen = set(pretrain_pool(spec))
    out: dict[str, list] = {}
    for name, n in sizes.items():
        out[name] = []
        for t in triples:
            if len(out[name]) == n:
                break
            key = tuple(sorted(t))
            if key in seen or (name in small and max(t) > spec.sft_max):
                continue
            seen.add(key)
            out[name].append(t)
        if len(out[name]) < n:
            raise ValueError(f"the task has too few problems for {n} {name} rows")
    return out


def pretraining_texts(spec: TaskSpec, rng: random.Random, n: int) -> list[dict]:
    """Facts, single-step worked sums (the format, both answer forms), bare answers in both phrasings, and
    three-operand chains in every form, over the pre-training pool."""
    pool = [tuple(rng.sample(p, 3)) for p in pretrain_pool(spec)]
    texts = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.35:
            x, y = rng.randint(1, 2 * spec.max), rng.randint(1, spec.max)
            x, y = (x, y) if rng.random() < 0.5 else (y, x)
            texts.append(f"{x}+{y}={x + y}.")
        elif kind < 0.45:
            a, b = rng.randint(1, spec.max), rng.randint(1, spec.max)
            texts.append(f"compute {a}+{b}. {a}+{b}={a + b}. " + rng.choice(ANSWERS) % (a + b))
        elif kind < 0.52:
            a, b = rng.randint(1, spec.max), rng.randint(1, spec.max)
            texts.append(f"what is {a}+{b}? answer {a + b}.")
        elif kind < 0.6:
            a, b, c = rng.choice(pool)
            texts.append(f"what is {a}+{b}+{c}? answer {a + b + c}.")
        else:
            a, b, c = rng.choice(pool)
            texts.append(f"add {a}, {b} and {c}: " + rng.choice(forms(a, b, c)).split(". ")[0] + ".")
    return [{"text": t} for t in texts]



def write_task_files(folder: Path, spec: TaskSpec, seed: int, sft_rows: int, rl_rows: int, eval_rows: int,
                     calib_rows: int) -> dict[str, Path]:
    """sft.jsonl, calib.jsonl (held-out SFT-style rows), calib_problems.jsonl (the same problems, for the α/ρ
    rules), rl.jsonl, id.jsonl, ood.jsonl for one seed, and sft_conf.jsonl (the SFT rows with a stated
    confidence, for the calibration-aware reward's arms)."""
    folder.mkdir(parents=True, exist_ok=True)
    sp = splits(spec, seed, {"sft": sft_rows, "calib": calib_rows, "rl": rl_rows, "id": eval_rows,
                             "ood": eval_rows})
    sft = [{"prompt": question(*t), "completion": teacher(*t)} for t in sp["sft"]]
    rows = {
        "sft": sft,
        "calib": [{"prompt": question(*t), "response": teacher(*t)} for t in sp["calib"]],
        "calib_problems": [{"problem": question(*t), "answer": str(sum(t))} for t in sp["calib"]],
        "rl": [{"prompt": question(*t), "answer": str(sum(t))} for t in sp["rl"]],
        "id": [{"problem": question(*t), "answer": str(sum(t))} for t in sp["id"]],
        "ood": [{"problem": question_ood(*t), "answer": str(sum(t))} for t in sp["ood"]],
        "sft_conf": [{"prompt": r["prompt"], "completion": r["completion"] + CONFIDENCE_SUFFIX} for r in sft],
    }
    return {name: write_jsonl(folder / f"{name}.jsonl", r) for name, r in rows.items()}


# -- where the entropy-gap targets fall ------------------------------------------------------------------------
TOKEN_CLASSES = ("format", "result digits", "operand digits", "connectives", "operators")
_SPANS = re.compile(r"(?P<x>\d+)\+(?P<y>\d+)=(?P<s1>\d+)(?P<conn>[^\d]+?)(?P<u>\d+)\+(?P<v>\d+)=(?P<s>\d+)")


def char_classes(response: str) -> list[str]:
    """The class of every character of a worked solution (digits of sums are results; digits copied into an
    addition are operands; `+`/`=` operators; the text between the additions connectives; the rest format)."""
    classes = ["format"] * len(response)
    match = _SPANS.search(response)
    if match is None:
        return classes
    for group, label in (("x", "operand digits"), ("y", "operand digits"), ("u", "operand digits"),
                         ("v", "operand digits"), ("s1", "result digits"), ("s", "result digits"),
                         ("conn", "connectives")):
        for i in range(*match.span(group)):
            classes[i] = label
    for i in range(match.start(), match.end()):
        if response[i] in "+=":
            classes[i] = "operators"
    tail = response[match.end():]
    boxed = tail.find("{")
    for i, ch in enumerate(tail[boxed + 1:] if boxed >= 0 else "", start=match.end() + boxed + 1):
        if ch.isdigit():
            classes[i] = "result digits"
    return classes
