"""`rejuv demo`: the paper's experiment in miniature, as a recipe over rejuv's public pieces.

base model ("pre-trained" here) → SFT saved at ModSFT's and OverSFT's epochs (and DFT, PEAR, ... when
asked for) → α and ρ by the rules of `lab/rules.py` on calibration problems → fusion and Rejuvenation of
OverSFT → the same GRPO run from every arm → evaluation in and out of distribution, before and after RL →
diagnosis → report (`lab/report.py`: the premise first, then the claims). The `planner` preset adds the
check of `rejuv plan` against full RL (`lab/plan_check.py`). Each step calls the function the CLI calls
(`run_sft`, `run_apply`, `run_rl`, `run_eval`, `run_diagnose`, `run_plan`).

Every step writes its own output folder atomically and is skipped when that folder already exists, so an
interrupted demo resumes where it stopped; the preset is recorded in `preset.json` and a different one
needs `--overwrite`. The CPU thread count is fixed (`lab/numerics.py`) so that a run's bytes do not depend
on how many cores the machine has.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from rejuv.errors import RejuvError
from rejuv.io.output import check_replaceable, claimed_output, mark_written
from rejuv.io.records import DamagedRecord, read_json
from rejuv.lab.numerics import pin_cpu_numerics
from rejuv.lab.plan_check import RULES
from rejuv.lab.presets import ARMS, DEFAULT_ARMS, PRESETS, world_of
from rejuv.lab.seeds import build_base, run_seed
from rejuv.lab.steps import TIMINGS, Steps, log, read_timings
from rejuv.modeling import check_device
from rejuv.options import SEED_LIMIT, Config, OptionError, Recipe, option, out_option
from rejuv.progress import silenced
from rejuv.train.common import quiet_libraries


def _settings_key(record: dict) -> dict:
    """What must match for finished steps to be reused: the world (`lab/presets.world_of`). Seeds and arms
    may change (each has its own folders), and so may the planner's settings (its steps have their own
    folders): `--preset planner` on a finished `small` demo reuses every step of the arms."""
    return world_of(record["settings"], record["numerics"])


@dataclass
class DemoConfig(Config):
    """The lab: base → ModSFT/OverSFT → α, ρ by rule → fusion/Rejuvenation → GRPO → eval, with a report."""

    preset: str = option("small", choices=lambda: list(PRESETS), help="smoke: a minute's plumbing check, no "
                         "claims; small: the experiment, 3 seeds, 10-18 min a seed on 2 cores; planner: small plus "
                         "rejuv plan against full RL over 6 seeds; full: for a GPU.")
    seeds: list[int] | None = option(None, help="Seeds, comma-separated, each once.", default_text="the preset's",
                                     at_least=0, below=SEED_LIMIT, nonempty=True, distinct=True)
    arms: list[str] = option(list(DEFAULT_ARMS), commas=True, choices=lambda: [*ARMS, "all"],
                             help="Arms, comma-separated or repeated, or 'all'.", nonempty=True, distinct=True)
    out: str = out_option("Output folder; finished steps in it are reused.", default="runs/demo")
    pool: list[str] = option([], path="input", help="Seed records of earlier sittings or other machines (files, "
                             "folders of seed-N.json, or demo outputs): the seeds they hold are not run here but "
                             "pooled into the report; their settings must be this run's.")
    device: str | None = option(None, help="cpu or cuda.", default_text="the preset's", check=check_device)
    planner_rule: str | None = option(None, choices=RULES, help="The planner's recommendation rule, fixed in "
                                      "advance (chosen on the development seeds of an earlier run): every seed "
                                      "given is then judged with it.", default_text="chosen on the preset's "
                                      "development seeds")
    overwrite: bool = option(False, help="Discard an existing demo (in a folder an earlier demo wrote) with other "
                             "settings.")
    verbose: bool = option(False, help="Show the progress bars of the libraries inside each step.")

    def check(self) -> None:
        if "all" in self.arms and len(self.arms) > 1:
            raise OptionError("arms", "'all' stands alone")


def _settings_match(root: Path, record: dict) -> bool:
    """Whether the demo in `root` was made with the same settings (a damaged record never matches)."""
    try:
        found = read_json(root / "preset.json", "demo record")
        return _settings_key(found) == _settings_key(record)
    except (DamagedRecord, KeyError, TypeError, AttributeError):
        return False


def run_demo(cfg: DemoConfig) -> dict:
    """Run the lab; returns the report written to `<out>/report.json`."""
    with claimed_output(cfg, "demo", resumable=True) as root:
        return _demo(cfg, root)


def _demo(cfg: DemoConfig, root: Path) -> dict:
    from rejuv.lab.records import build_record, pooled_records, write_record
    from rejuv.lab.report import write_report

    arms = ARMS if list(cfg.arms) == ["all"] else tuple(cfg.arms)
    p = replace(PRESETS[cfg.preset], seeds=list(cfg.seeds) if cfg.seeds else PRESETS[cfg.preset].seeds)
    if cfg.device:
        p = replace(p, device=cfg.device)
    if cfg.planner_rule:
        p = replace(p, planner_rule=cfg.planner_rule, dev_seeds=[])
    numerics = pin_cpu_numerics() if p.device == "cpu" else {"device": p.device}
    record = {"preset": cfg.preset, "settings": asdict(p), "arms": list(arms),
              "numerics": {k: numerics[k] for k in ("threads", "cpu_capability") if k in numerics}}
    world = _settings_key(record)
    pooled = pooled_records(list(cfg.pool), world, arms, p)  # checked before the output is touched
    if root.is_dir() and any(root.iterdir()) and not _settings_match(root, record):
        if not cfg.overwrite:
            raise RejuvError(f"{root}: holds a demo with other settings ({root / 'preset.json'}); pass --overwrite "
                             "or another --out")
        check_replaceable(root, "demo")  # an earlier demo's, holding nothing but what rejuv wrote
        shutil.rmtree(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        (root / "preset.json").write_text(json.dumps(record, indent=2) + "\n")
        mark_written(root, "demo", [root / "preset.json"])
    except OSError as exc:
        raise RejuvError(f"{root}: cannot write the demo here ({exc.strerror})") from None
    here = [seed for seed in p.seeds if seed not in pooled]
    if pooled:
        log(f"seeds {', '.join(map(str, pooled))} pooled from earlier sittings; running "
            f"{', '.join(map(str, here)) or 'none'}")
    with quiet_libraries(cfg.verbose), (contextlib.nullcontext() if cfg.verbose else silenced()):
        steps = Steps(len(here))
        base = build_base(root, p, steps) if here else None
        for i, seed in enumerate(here):
            log(f"seed {seed}: {i + 1} of {len(here)}")
            steps.begin_seed(i)
            run_seed(root, base, p, seed, tuple(arms), steps)
    timings = read_timings(root / TIMINGS)
    records = {seed: found for seed, (found, _) in pooled.items()}
    sources = {seed: source for seed, (_, source) in pooled.items()}
    written = []
    for seed in here:
        records[seed] = build_record(root, seed, p, tuple(arms), world, _seed_seconds(timings, seed, steps.names))
        written.append(write_record(root / "records", records[seed]))
        sources[seed] = str(written[-1])
    for seed in pooled:  # kept here too, so that this output pools into a later sitting with every seed it reports
        written.append(write_record(root / "records", records[seed]))
    mark_written(root, "demo", written)
    report = write_report(root, p, tuple(arms), cfg.preset, sum(t["seconds"] for t in timings), numerics, records,
                          sources)
    log(f"report: {root / 'report.html'}")
    return report


def _seed_seconds(timings: list[dict], seed: int, names: set[str]) -> float:
    """The compute time of a seed's steps in this run (`names`: the planner's steps, from another preset run in
    the same folder, are left out of a `small` run's seeds), the last time of each: a step run again after
    damage counts once."""
    last = {t["step"]: t["seconds"] for t in timings if t["step"].startswith(f"seed {seed}:") and t["step"] in names}
    return sum(last.values())


def summary_text(cfg: DemoConfig, report: dict) -> str:
    """What `rejuv demo` prints: the results table, the premise and claims, and where the report is."""
    from rejuv.lab.report import markdown_table

    lines = [markdown_table(report["table"], tuple(report["arms"]))]
    lines += ["- " + claim["text"] for claim in report["premise"] + report["claims"]]
    return "\n".join([*lines, f"report: {Path(cfg.out) / 'report.html'}"])


RECIPE = Recipe(DemoConfig, run_demo, summary_text)
