"""`rejuv demo`: the paper's experiment in miniature, an application on top of the recipes.

base model ("pre-trained" here) → SFT saved at ModSFT's and OverSFT's epochs (and DFT, PEAR, ... when
asked for) → α and ρ by the rules of `lab/rules.py` on calibration problems → fusion and Rejuvenation of
OverSFT → the same GRPO run from every arm → evaluation in and out of distribution, before and after RL →
diagnosis → report (`lab/results.py` reads the steps' outputs, `lab/judging.py` judges the premise, then
the claims, and `lab/report.py` renders). The `planner` preset adds the check of `rejuv plan` against full
RL (`lab/plan_check.py`). Each step calls the function the CLI calls
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
from rejuv.lab.plan_check import RULES, run_planner_stage
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
                         "claims; small: the experiment, 3 seeds, 10-18 min a seed on 2 cores (make demo: one of its "
                         "twelve committed seeds run, the others read from records); planner: small plus rejuv plan "
                         "against full RL over 6 seeds, about 1 h a seed; full: for a GPU.")
    seeds: list[int] | None = option(None, help="Seeds, comma-separated, each once.", default_text="the preset's",
                                     at_least=0, below=SEED_LIMIT, nonempty=True, distinct=True)
    arms: list[str] = option(list(DEFAULT_ARMS), commas=True, choices=lambda: [*ARMS, "all"],
                             help="Arms, comma-separated or repeated, or 'all'.", nonempty=True, distinct=True)
    out: str = out_option("Output folder; finished steps in it are reused.", default="runs/demo")
    pool: list[str] = option([], path="input", help="Seed records of earlier sittings or other machines (files, "
                             "folders of seed-N.json, or demo outputs): the seeds they hold are not run here but "
                             "pooled into the report; their settings must be this run's.")
    reproduce: list[int] = option([], help="Seeds run here although --pool holds their records: each run is "
                                  "compared with its committed record, number by number, and the report says whether "
                                  "this machine reproduced it (the committed record is what the claims count).",
                                  at_least=0, below=SEED_LIMIT, distinct=True)
    planner_records: list[str] = option([], path="input", help="Records of `--preset planner` runs (files or folders "
                                        "of seed-N.json): the report shows their planner check beside the claims.")
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
        if self.reproduce and not self.pool:
            raise OptionError("reproduce", "compares a seed run here with its record in --pool; give --pool",
                              also=("pool",))
        outside = [s for s in self.reproduce if self.seeds is not None and s not in self.seeds]
        if outside:
            raise OptionError("reproduce", f"seed {outside[0]} is not one of --seeds", also=("seeds",))


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
    """Settings and earlier records checked before the output is touched; then the seeds run here, their
    records beside the pooled ones, and the report."""
    from rejuv.lab.records import made_elsewhere, planner_records, pooled_records
    from rejuv.lab.report import write_report

    arms = ARMS if list(cfg.arms) == ["all"] else tuple(cfg.arms)
    p = replace(PRESETS[cfg.preset], seeds=list(cfg.seeds) if cfg.seeds else PRESETS[cfg.preset].seeds)
    if cfg.device:
        p = replace(p, device=cfg.device)
    if cfg.planner_rule:
        p = replace(p, planner_rule=cfg.planner_rule, dev_seeds=[])
    numerics = pin_cpu_numerics() if p.device == "cpu" else {"device": p.device}
    record = {"preset": cfg.preset, "settings": asdict(p), "arms": list(arms),
              "numerics": {k: numerics[k] for k in ("threads", "cpu_capability", "cpu_isa") if k in numerics}}
    world = _settings_key(record)
    pooled = pooled_records(list(cfg.pool), world, arms, p)
    unpooled = [s for s in cfg.reproduce if s not in pooled]
    if unpooled:
        raise RejuvError(f"--reproduce {unpooled[0]}: --pool holds no record of seed {unpooled[0]} to compare with")
    outside = [s for s in cfg.reproduce if s not in p.seeds]
    if outside:
        raise RejuvError(f"--reproduce {outside[0]}: not one of the seeds ({', '.join(map(str, p.seeds))})")
    planner = planner_records(list(cfg.planner_records), world, arms)
    _claim_folder(cfg, root, record)
    here = [seed for seed in p.seeds if seed not in pooled or seed in cfg.reproduce]
    if pooled:
        log(f"seeds {', '.join(str(s) for s in sorted(pooled) if s not in cfg.reproduce) or 'none'} read from "
            f"committed records; running {', '.join(map(str, here)) or 'none'} here"
            + (f" (seed {', '.join(map(str, cfg.reproduce))} to compare with its committed record)"
               if cfg.reproduce else ""))
    steps = _run_seeds(cfg, root, p, arms, here, pooled)
    timings = read_timings(root / TIMINGS)
    records, sources, reproduced = _records(cfg, root, p, arms, world, here, pooled, timings, steps)
    elsewhere = {seed: found for seed in pooled if (found := made_elsewhere(records[seed], world))}
    report = write_report(root, p, tuple(arms), cfg.preset, sum(t["seconds"] for t in timings), numerics, records,
                          sources, ran=here, reproduced=reproduced, elsewhere=elsewhere, planner_records=planner)
    log(f"report: {root / 'report.html'}")
    return report


def _claim_folder(cfg: DemoConfig, root: Path, record: dict) -> None:
    """The output folder holds this demo's settings: a demo with other settings there is replaced only with
    --overwrite, and only if it holds nothing but what rejuv wrote."""
    if root.is_dir() and any(root.iterdir()) and not _settings_match(root, record):
        if not cfg.overwrite:
            raise RejuvError(f"{root}: holds a demo with other settings ({root / 'preset.json'}); pass --overwrite "
                             "or another --out")
        check_replaceable(root, "demo")
        shutil.rmtree(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        (root / "preset.json").write_text(json.dumps(record, indent=2) + "\n")
        mark_written(root, "demo", [root / "preset.json"])
    except OSError as exc:
        raise RejuvError(f"{root}: cannot write the demo here ({exc.strerror})") from None


def _run_seeds(cfg: DemoConfig, root: Path, p, arms: tuple[str, ...], here: list[int], pooled: dict) -> Steps:
    """The base, then every seed run here (its arms, then the planner's stage where the preset has one)."""
    # the time a seed took where its record was made: what the log says is left until this run has measured
    expected = [pooled[s][0]["seconds"] for s in cfg.reproduce]
    with quiet_libraries(cfg.verbose), (contextlib.nullcontext() if cfg.verbose else silenced()):
        steps = Steps(len(here), expected_seed_seconds=sum(expected) / len(expected) if expected else None)
        base = build_base(root, p, steps) if here else None
        for i, seed in enumerate(here):
            log(f"seed {seed}: {i + 1} of {len(here)}")
            steps.begin_seed(i)
            run = run_seed(root, base, p, seed, tuple(arms), steps)
            if p.plan_epochs:
                run_planner_stage(root, root / f"seed-{seed}", base, p, seed, run.files, steps, run.plain)
    return steps


def _records(cfg: DemoConfig, root: Path, p, arms: tuple[str, ...], world: dict, here: list[int], pooled: dict,
             timings: list[dict], steps: Steps) -> tuple[dict, dict, dict]:
    """Every seed's record (those run here, those pooled) and where it came from, written into records/; a
    seed reproduced here keeps its committed record, and this run's goes to reproduced/ with the comparison."""
    from rejuv.lab.records import build_record, compare_records, result_count, write_record

    records = {seed: found for seed, (found, _) in pooled.items()}
    sources = {seed: source for seed, (_, source) in pooled.items()}
    written, reproduced = [], {}
    for seed in here:
        built = build_record(root, seed, p, tuple(arms), world, _seed_seconds(timings, seed, steps.names))
        if seed in cfg.reproduce:
            written.append(write_record(root / "reproduced", built))
            reproduced[seed] = {"record": built, "path": str(written[-1]), "committed": sources[seed],
                                "differences": compare_records(records[seed], built),
                                "values": result_count(records[seed])}
            continue
        records[seed] = built
        written.append(write_record(root / "records", records[seed]))
        sources[seed] = str(written[-1])
    for seed in pooled:  # kept here too, so that this output pools into a later sitting with every seed it reports
        written.append(write_record(root / "records", records[seed]))
    mark_written(root, "demo", written)
    return records, sources, reproduced


def _seed_seconds(timings: list[dict], seed: int, names: set[str]) -> float:
    """The compute time of a seed's steps in this run (`names`: the planner's steps, from another preset run in
    the same folder, are left out of a `small` run's seeds), the last time of each: a step run again after
    damage counts once."""
    last = {t["step"]: t["seconds"] for t in timings if t["step"].startswith(f"seed {seed}:") and t["step"] in names}
    return sum(last.values())


def summary_text(cfg: DemoConfig, report: dict) -> str:
    """What `rejuv demo` prints: where the numbers came from, the results table, the premise and claims, the
    reproduction check, and where the report is."""
    from rejuv.lab.report import markdown_table

    lines = ["- " + text for text in report["provenance"]["lines"]]
    lines += [markdown_table(report["table"], tuple(report["arms"]))]
    lines += ["- " + claim["text"] for claim in report["premise"] + report["claims"]]
    return "\n".join([*lines, f"report: {Path(cfg.out) / 'report.html'}"])


RECIPE = Recipe(DemoConfig, run_demo, summary_text)
