"""A seed's results in one file, so that seeds run in other sittings or on other machines pool into one
report.

The report reads every number from a seed's step folders (`lab/results.py`); a seed record is what it reads,
in one JSON file (`<out>/records/seed-N.json`, about 200 kB for the `small` preset, remade from the folders
by every demo run). Seeds are deterministic on one kind of machine, so a seed run elsewhere at the same
settings is the seed run here: `rejuv demo --pool FOLDER` takes the records of earlier sittings (or of
another demo's output) for the seeds it names and runs only the others. A pooled record is untrusted input:
its world (the preset's settings, the CPU numerics), its arms and its planner settings must be this run's,
and every value the report reads is checked, each fault named with the file and the place in it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from rejuv.errors import RejuvError
from rejuv.evaluation.kept import write_atomic
from rejuv.io.jsonl import strict_dumps
from rejuv.io.records import Checked, read_json
from rejuv.lab.plan_check import seed_result
from rejuv.lab.presets import PLANNER_CHECK, Preset
from rejuv.lab.results import RL_CURVES, base_params, seed_rows, seed_rules
from rejuv.lab.task import TOKEN_CLASSES
from rejuv.provenance import library_versions

FORMAT = 1


def _planner_settings(p: Preset) -> dict:
    """The settings a seed's planner check depends on, as JSON reads them back."""
    return json.loads(json.dumps({k: getattr(p, k) for k in PLANNER_CHECK}))


def _written_by() -> dict:
    """rejuv's version and, when it runs from a git checkout, its commit (`-dirty` with uncommitted changes)."""
    try:
        found = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=Path(__file__).parent,
                               capture_output=True, text=True, timeout=10, check=False)
        commit = found.stdout.strip() if found.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"rejuv": library_versions()["rejuv"], "commit": commit}


def build_record(root: Path, seed: int, p: Preset, arms: tuple[str, ...], world: dict, seconds: float) -> dict:
    """Seed `seed`'s record from its finished step folders under `root`."""
    rules, classes, reset = seed_rules(root, seed, p)
    planner = seed_result(root / f"seed-{seed}", p.rl_steps, p.plan_probe_steps) if p.plan_epochs else None
    return {"format": FORMAT, "seed": seed, "world": world, "arms": list(arms),
            "planner_settings": _planner_settings(p) if p.plan_epochs else None,
            "rows": seed_rows(root / f"seed-{seed}", arms), "rules": rules, "target_classes": classes,
            "reset": reset, "planner": planner, "params": base_params(root), "seconds": round(seconds, 1),
            "written_by": _written_by()}


def write_record(folder: Path, record: dict) -> Path:
    """`folder/seed-N.json`, on one line: the RL curves are most of it (20,000 numbers for four arms)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"seed-{record['seed']}.json"
    write_atomic(path, strict_dumps(record, indent=None) + "\n")
    return path


class _Maybe:
    def __init__(self, spec: Any):
        self.spec = spec


# What the report reads from a record, and of what kind ("share": a number in [0, 1]; "?": or null; a dict
# with "*": any keys; a one-item list: a list of that).
_KIND = {"number": "a number", "integer": "an integer", "text": "text", "bool": "true or false"}
_SPLITS = {"id": "share", "ood": "share", "overall": "share"}
_CALIBRATION = _Maybe({"stated": "share", "brier": "number", "ece": "number"})
_ROW = {"before": _SPLITS, "after": _SPLITS, "gain": "number",
        "calibration": {"before": _CALIBRATION, "after": _CALIBRATION},
        "rl": {key: ["number?"] for key in RL_CURVES},
        "reward_change": "number?", "reward_last_change": "number?",
        "update": _Maybe({"rel": "number", "changed_exact": "share", "changed_bf16": "share",
                          "energy_rank_share": "share?", "spikes_kept": "share?"}),
        "forecast": _Maybe({"dead_share": "share", "prompts": "integer", "group_size": "integer",
                            "samples_per_prompt": "integer"}),
        "dead_measured": "share?", "entropy": "number", "drift_rel": "number", "flagged": "bool"}
_RULES = {"alpha": {"chosen": "number", "rule": "text"}, "rho": {"chosen": "number", "rule": "text"}}
_RESET = {"rho": "number", "neurons_reset": "integer", "neurons_total": "integer", "by_layer": {"*": "integer"},
          "by_kind": {"*": "integer"}}
_FIELD_RULE = {"pick": "text?", "shortfall": "number?", "spearman": "number?"}
_PLANNER = {"field": {"*": _FIELD_RULE}, "epochs": ["text"], "post_rl": {"*": "share"}, "best_start": "text",
            "shortfall": {"*": "number"}, "recommended": {"*": "text"}, "by_sft_accuracy": "text",
            "shortfall_by_sft_accuracy": "number", "searched": "text", "searched_minus_rule": "number",
            "searched_minus_half": "number", "spearman_probe": "number?", "spearman_sft_accuracy": "number?"}


def _conform(check: Checked, value: Any, spec: Any, where: str) -> None:
    if isinstance(spec, _Maybe):
        if value is not None:
            _conform(check, value, spec.spec, where)
    elif isinstance(spec, str):
        if value is None and spec.endswith("?"):
            return
        kind = spec.rstrip("?")
        if kind == "share":
            number = check.of(value, "a number", where)
            if not 0.0 <= number <= 1.0:
                check.fail(where, f"{number} is outside [0, 1]")
        else:
            check.of(value, _KIND[kind], where)
    elif isinstance(spec, list):
        for i, item in enumerate(check.of(value, "a list", where)):
            _conform(check, item, spec[0], f"{where}[{i}]")
    else:
        check.of(value, "an object", where)
        for key in value if "*" in spec else spec:
            if key not in value:
                check.fail(f"{where}[{key!r}]", "missing")
            _conform(check, value[key], spec.get(key, spec.get("*")), f"{where}[{key!r}]")


def _first_difference(found: Any, wanted: Any, where: str = "") -> str | None:
    if isinstance(found, dict) and isinstance(wanted, dict):
        for key in sorted(set(found) | set(wanted)):
            if key not in found or key not in wanted:
                return f"{where}{key}"
            inner = _first_difference(found[key], wanted[key], f"{where}{key}.")
            if inner:
                return inner
        return None
    return None if found == wanted else where.rstrip(".") or "the top level"


def read_record(path: Path, world: dict, arms: tuple[str, ...], p: Preset) -> dict:
    """A pooled seed record, checked: made in this world, for these arms (and the planner's settings when the
    preset checks the planner), every value the report reads of the right kind."""
    check = Checked(path, "lab seed record")
    record = check.of(read_json(path, "lab seed record"), "an object", "")
    if check.get(record, "format", "an integer") != FORMAT:
        check.fail("['format']", f"{record['format']}, but this rejuv reads format {FORMAT}")
    check.get(record, "seed", "an integer")
    found_world = check.get(record, "world", "an object")
    differs = _first_difference(found_world.get("settings"), world.get("settings"), "settings.")
    if differs:
        raise RejuvError(f"{path}: seed {record['seed']} was run in another world ({differs} differs from this "
                         "run's preset); only seeds of the same settings pool")
    check.of(found_world.get("numerics"), "an object", "['world']['numerics']")
    found_arms = [check.of(a, "text", f"['arms'][{i}]") for i, a in enumerate(check.get(record, "arms", "a list"))]
    if found_arms != list(arms):
        raise RejuvError(f"{path}: seed {record['seed']} has the arms {','.join(found_arms)}, this run "
                         f"{','.join(arms)} (the diagnosis compares the arms with each other, so they must match)")
    _conform(check, record.get("rows"), {arm: _ROW for arm in arms}, "['rows']")
    _conform(check, record.get("rules"), _Maybe(_RULES), "['rules']")
    _conform(check, record.get("target_classes"), _Maybe(dict.fromkeys(TOKEN_CLASSES, "share")),
             "['target_classes']")
    _conform(check, record.get("reset"), _Maybe(_RESET), "['reset']")
    _conform(check, record.get("params"), "integer?", "['params']")
    _conform(check, record.get("seconds"), "number", "['seconds']")
    _conform(check, record.get("written_by"), {"rejuv": "text?", "commit": "text?"}, "['written_by']")
    if p.plan_epochs:
        if record.get("planner_settings") != _planner_settings(p) or record.get("planner") is None:
            raise RejuvError(f"{path}: seed {record['seed']} has no planner check with this preset's settings "
                             f"({', '.join(PLANNER_CHECK)}); run that seed here instead")
        planner = check.get(record, "planner", "an object")
        _conform(check, planner, {"skipped": "text"} if "skipped" in planner else _PLANNER, "['planner']")
    return record


def pooled_records(paths: list[str], world: dict, arms: tuple[str, ...], p: Preset) -> dict[int, tuple[dict, str]]:
    """Seed → (record, its file) from `--pool`'s files and folders (a folder's `seed-*.json`, or a demo
    output's `records/`). Two records of one seed are refused; a seed the run does not name is left out."""
    files: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            inside = path / "records" if (path / "records").is_dir() else path
            found = sorted(inside.glob("seed-*.json"))
            if not found:
                raise RejuvError(f"{given}: no seed records (seed-N.json) in it (--pool)")
            files += found
        else:
            files.append(path)
    pooled: dict[int, tuple[dict, str]] = {}
    for file in files:
        record = read_record(file, world, arms, p)
        seed = record["seed"]
        if seed in pooled:
            raise RejuvError(f"{file}: seed {seed} is pooled twice (also {pooled[seed][1]}); pool each seed once")
        if seed in p.seeds:
            pooled[seed] = (record, str(file))
    return pooled


def made_elsewhere(record: dict, world: dict) -> dict | None:
    """The CPU numerics a pooled record was made with, when they are not this run's (another thread count, code
    path or kernel-relevant extensions: its numbers are another machine's, within the seeds' spread, not this
    one's bytes). A record that does not state the extensions (written before they were recorded) is told
    apart by the rest alone."""
    found, here = record["world"].get("numerics") or {}, world.get("numerics") or {}
    keys = [k for k in set(found) | set(here) if k != "cpu_isa" or ("cpu_isa" in found and "cpu_isa" in here)]
    return None if all(found.get(k) == here.get(k) for k in keys) else found


# What a seed's record holds that is not a result: how long it took, who wrote it, with which numerics, and
# (at any depth) the paths of the files a step read, which name the folder it ran in.
_NOT_RESULTS = ("seconds", "written_by", "world")
_PATHS = ("data",)


def compare_records(committed: dict, here: dict) -> list[dict]:
    """Every number (or other value) in which a seed run here differs from its committed record: the place,
    both values and, for numbers, the difference. Empty: reproduced digit for digit."""
    found: list[dict] = []

    def walk(a: Any, b: Any, where: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b), key=str):
                if (not where and key in _NOT_RESULTS) or key in _PATHS:
                    continue
                if key not in a or key not in b:
                    found.append({"place": f"{where}[{key!r}]", "committed": a.get(key, "(missing)"),
                                  "here": b.get(key, "(missing)")})
                else:
                    walk(a[key], b[key], f"{where}[{key!r}]")
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                walk(x, y, f"{where}[{i}]")
        elif a != b:
            numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
            found.append({"place": where, "committed": a, "here": b,
                          **({"difference": b - a} if numbers else {})})

    walk(committed, here, "")
    return found


def planner_records(paths: list[str], world: dict, arms: tuple[str, ...]) -> dict[int, tuple[dict, str]]:
    """Seed → (record, its file) of `--preset planner` runs whose planner check a report shows (their world's
    settings must be this run's, and their planner settings the planner preset's)."""
    if not paths:
        return {}
    from dataclasses import replace

    from rejuv.lab.presets import PRESETS

    planner = PRESETS["planner"]
    every_seed = replace(planner, seeds=list(range(1 << 16)))  # the records say which seeds they hold
    return dict(sorted(pooled_records(paths, world, arms, every_seed).items()))


def result_count(record: dict) -> int:
    """How many values of a record `compare_records` compares."""
    def count(value: Any, top: bool) -> int:
        if isinstance(value, dict):
            return sum(count(v, False) for k, v in value.items() if not (top and k in _NOT_RESULTS) and k not in _PATHS)
        if isinstance(value, list):
            return sum(count(v, False) for v in value)
        return 1

    return count(record, True)
