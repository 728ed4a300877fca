"""The lab (`rejuv demo`, the top of the house) end to end on the smoke preset: every arm and every number exists
and is finite."""

import json
import math
from dataclasses import replace

import pytest
from click.testing import CliRunner

from rejuv.cli import main
from rejuv.errors import RejuvError
from rejuv.lab.demo import DemoConfig, run_demo
from rejuv.lab.plan_check import same_weights
from rejuv.lab.presets import DEFAULT_ARMS, PRESETS
from rejuv.lab.rules import ALPHAS, RHOS


def _numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        yield obj


@pytest.mark.slow
def test_smoke_demo_runs_every_arm_end_to_end(tmp_path, monkeypatch):
    result = CliRunner().invoke(main, ["demo", "--preset", "smoke", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    assert "seed 0: 1 of 1" in result.output  # where the demo stands, in its own log lines
    assert "step 1 of the seed" in result.output and "min in]" in result.output
    root = tmp_path / "demo"
    report = json.loads((root / "report.json").read_text())
    assert report["arms"] == list(DEFAULT_ARMS) and report["seeds"] == [0]
    for arm in DEFAULT_ARMS:
        row = report["per_seed"]["0"][arm]
        for stage in ("before", "after"):
            assert set(row[stage]) == {"id", "ood", "overall"}
            assert all(0 <= v <= 1 for v in row[stage].values())
        assert len(row["rl"]["reward"]) == report["settings"]["rl_steps"]
        assert math.isfinite(row["entropy"]) and row["drift_rel"] > 0
        for key in ("before_id", "after_ood", "gain", "entropy", "drift_rel"):
            assert report["table"][arm][key]["n"] == 1 and math.isfinite(report["table"][arm][key]["mean"])
        assert report["rl_length"][arm]["seeds"] == 1
        # what GRPO changed from the arm's start (smoke's few steps may change nothing: all rewards 0, no gradient)
        update = row["update"]
        assert (update["rel"] > 0) == (update["changed_exact"] > 0) == (update["energy_rank_share"] is not None)
        assert 0 <= update["changed_bf16"] <= update["changed_exact"] <= 1 and 0 <= update["spikes_kept"] <= 1
    assert len(report["rl_updates"]["lines"]) == len(DEFAULT_ARMS) and report["rl_updates"]["claims"] == []
    assert "What GRPO changed" in (root / "report.html").read_text()
    assert all(math.isfinite(x) for x in _numbers(report["per_seed"]))
    # The smoke preset checks plumbing: it states no premise and no claim.
    assert not report["claims_stated"] and report["premise"] == [] and report["claims"] == []
    assert "it states no claims" in (root / "report.html").read_text()
    rules = report["rules"]["0"]
    assert rules["alpha"]["chosen"] in ALPHAS and rules["rho"]["chosen"] in (0.0, *RHOS)
    assert set(rules["alpha"]["candidates"]) == {f"{a:g}" for a in ALPHAS} and rules["rho"]["rule"]
    assert sum(report["target_classes"]["mean"].values()) == pytest.approx(1.0)
    manifest = json.loads((root / "seed-0" / "rules" / rules["rejuvenation"] / "rejuvenation.json").read_text())
    assert manifest["alpha"] == rules["alpha"]["chosen"] and manifest["rho"] == rules["rho"]["chosen"]
    assert any(d.startswith("alpha ") and "chosen by the rule" in d for d in report["deviations"])
    assert report["numerics"]["threads"] == 2 and report["planner"] is None
    for name in ("report.html", "rl_curves.png", "before_after.png", "table.md"):
        assert (root / name).stat().st_size > 0
    assert "Table 2 in miniature" in (root / "report.html").read_text()
    # The seed's record holds what the report read; pooled into another output, the seed is not run again
    # (nothing is trained there) and the report is the same.
    record = json.loads((root / "records" / "seed-0.json").read_text())
    assert record["seed"] == 0 and record["rows"] == report["per_seed"]["0"] and record["seconds"] > 0
    result = CliRunner().invoke(main, ["demo", "--preset", "smoke", "--out", str(tmp_path / "pooled"),
                                       "--pool", str(root)])
    assert result.exit_code == 0, result.output
    pooled = json.loads((tmp_path / "pooled" / "report.json").read_text())
    assert pooled["per_seed"] == report["per_seed"] and pooled["table"] == report["table"]
    assert pooled["rules"] == report["rules"] and pooled["dead_groups"] == report["dead_groups"]
    assert pooled["records"]["0"]["from"] == str(root / "records" / "seed-0.json")
    assert not (tmp_path / "pooled" / "base").exists() and not (tmp_path / "pooled" / "timings.jsonl").exists()
    # The output marker lists every file the demo wrote (its steps, time log, records, report), nothing else.
    from rejuv.io.output import not_written_by_rejuv

    assert not_written_by_rejuv(root) is None and not_written_by_rejuv(tmp_path / "pooled") is None
    # A second run reuses every finished step (resumable) and gives the same table; the time log read back is
    # untrusted: a line cut by a killed run and a NaN are left out, said, and the report is built.
    with open(root / "timings.jsonl", "a") as f:
        f.write('{"step": "seed 0: x", "seconds": NaN}\n{"step": "seed 0: y", "sec')
    again = CliRunner().invoke(main, ["demo", "--preset", "smoke", "--out", str(root)])
    assert again.exit_code == 0, again.output
    assert "timings.jsonl:" in again.output and "not a step's time (cut or edited)" in again.output
    assert json.loads((root / "report.json").read_text())["table"] == report["table"]
    assert json.loads((root / "records" / "seed-0.json").read_text())["seconds"] == record["seconds"]
    (root / "analysis").mkdir()
    (root / "analysis" / "notes.md").write_text("mine")  # a user's file: resuming keeps it, replacing refuses
    again = run_demo(DemoConfig("smoke", out=str(root)))
    assert again["table"] == report["table"] and (root / "analysis" / "notes.md").read_text() == "mine"
    # Arms can change: a subset reuses every finished step (no new step is timed) and reports only those arms.
    steps = (root / "timings.jsonl").read_text()
    subset = run_demo(DemoConfig("smoke", out=str(root), arms=["modsft", "oversft"]))
    assert len((root / "timings.jsonl").read_text().splitlines()) == len(steps.splitlines()) + 1  # the diagnosis
    assert subset["table"]["oversft"] == report["table"]["oversft"]
    monkeypatch.setitem(PRESETS, "smoke", replace(PRESETS["smoke"], rl_steps=3))
    with pytest.raises(RejuvError, match="other settings"):
        run_demo(DemoConfig("smoke", out=str(root)))
    with pytest.raises(RejuvError, match="analysis/notes.md, which rejuv did not write; --overwrite replaces only"):
        run_demo(DemoConfig("smoke", out=str(root), overwrite=True))
    assert (root / "analysis" / "notes.md").read_text() == "mine" and (root / "report.json").is_file()
    with pytest.raises(RejuvError, match=r"seed-0.json: seed 0 was run in another world \(settings.rl_steps"):
        run_demo(DemoConfig("smoke", out=str(tmp_path / "elsewhere"), pool=[str(tmp_path / "pooled")]))


@pytest.mark.slow
def test_the_planner_stage_on_the_smoke_world(tmp_path, monkeypatch):
    """`rejuv plan` over the SFT epochs against full RL from each, the rule chosen on seed 0 and judged on seed 1,
    added to a finished demo: the arms' steps are reused, and so are their GRPO runs where a start is an arm's."""
    world = replace(PRESETS["smoke"], seeds=[0, 1], rewards=["math_verify", "tiny:contains_seven"])
    monkeypatch.setitem(PRESETS, "smoke", world)
    root = tmp_path / "planner"
    run_demo(DemoConfig("smoke", out=str(root)))
    before = (root / "timings.jsonl").read_text().splitlines()
    monkeypatch.setitem(PRESETS, "smoke", replace(world, plan_epochs=[1, 2, 4], plan_probe_steps=4,
                                                  plan_alphas=[0.5, 0.8], plan_rhos=[0.0, 0.01], dev_seeds=[0]))
    report = run_demo(DemoConfig("smoke", out=str(root)))
    added = [json.loads(x)["step"] for x in (root / "timings.jsonl").read_text().splitlines()[len(before):]]
    assert not any(": GRPO from" in s or s.endswith(": SFT, saving epochs [1, 4]") for s in added), added
    assert sum("SFT for the planner, saving epochs [2]" in s for s in added) == 2  # epoch 2 is no arm's
    assert not any(s.endswith("full GRPO from epoch-1") or s.endswith("full GRPO from epoch-4") for s in added)
    assert sum(s.endswith("full GRPO from epoch-2") for s in added) == 2
    planner = report["planner"]
    assert planner["rule"] in ("end_reward", "slope_extrapolation") and not planner["skipped"]
    assert planner["development"]["seeds"] == [0] and planner["test"]["seeds"] == [1]
    for seed in (0, 1):
        runs = json.loads((root / f"seed-{seed}" / "plan_truth" / "runs.json").read_text())
        assert runs["epoch-1"].endswith("rl/modsft") and runs["epoch-4"].endswith("rl/oversft")
        check = planner["per_seed"][seed]
        assert check["epochs"] == ["epoch-1", "epoch-2", "epoch-4"] and check["best_start"] in check["post_rl"]
        after, best = check["post_rl"], check["best_start"]
        assert after[best] == max(after.values())
        for rule, name in check["recommended"].items():  # each shortfall is the best start's lead over the pick
            assert check["shortfall"][rule] == pytest.approx(after[best] - after[name])
        assert check["shortfall_by_sft_accuracy"] == pytest.approx(after[best] - after[check["by_sft_accuracy"]])
        assert check["searched"].startswith("searched-alpha") and "alpha0.5" in check["post_rl"]
        # the search's α 0.5 without a reset is the rules' fusion at α 0.5, byte for byte: the cheap pick may
        # take that start's post-RL result
        folder = root / f"seed-{seed}"
        assert same_weights(folder / "plan" / "candidates" / "alpha0.5-rho0", folder / "rules" / "alpha0.5")
        searched = folder / "plan" / "candidates" / check["searched"].removeprefix("searched-")
        assert (runs[check["searched"]] == runs["alpha0.5"]) == same_weights(searched, folder / "rules" / "alpha0.5")
        cheap = check["cheap_search"]
        if cheap["same_weights_as"] is not None:
            assert cheap["shortfall"] == pytest.approx(after[best] - after[cheap["same_weights_as"]])
    assert any(t.startswith("Test seeds (1 seeds)") for t in planner["texts"])
    assert "The planner against full RL" in (root / "report.html").read_text()
    # The seeds' records carry the planner's check: pooled elsewhere, the planner table is the same.
    pooled = run_demo(DemoConfig("smoke", out=str(tmp_path / "pooled"), pool=[str(root)]))
    assert pooled["planner"] == planner and pooled["table"] == report["table"]
    # The same folder as a run without the planner again: a seed's compute is its arms' steps alone.
    monkeypatch.setitem(PRESETS, "smoke", world)
    run_demo(DemoConfig("smoke", out=str(root)))
    timings = [json.loads(x) for x in (root / "timings.jsonl").read_text().splitlines()]
    for seed in (0, 1):
        mine = [t for t in timings if t["step"].startswith(f"seed {seed}:")]
        arms_only = [t["seconds"] for t in mine if "planner" not in t["step"] and "rejuv plan" not in t["step"]]
        assert len(arms_only) < len(mine)
        record = json.loads((root / "records" / f"seed-{seed}.json").read_text())
        assert record["seconds"] == round(sum(arms_only), 1) and record["planner"] is None


@pytest.mark.slow
def test_smoke_demo_runs_the_alternative_arms(tmp_path):
    """CHORD-µ, CHORD-φ, PEAR, DFT and the filtered RL run as arms beside staged SFT → RL."""
    arms = ("modsft", "oversft", "dft", "chord_mu", "chord_phi", "pear", "oversft_filter", "conf", "conf_brier")
    report = run_demo(DemoConfig("smoke", out=str(tmp_path / "alt"), arms=list(arms)))
    root = tmp_path / "alt" / "seed-0"
    for arm in arms:
        assert all(0 <= v <= 1 for v in report["per_seed"]["0"][arm]["after"].values())
    mu = [json.loads(x)["chord_mu"] for x in (root / "rl" / "chord_mu" / "plasticity.jsonl").read_text().splitlines()]
    assert mu == pytest.approx([0.9, 0.05])  # the CHORD-µ schedule squeezed into the smoke run's 2 steps
    phi = json.loads((root / "rl" / "chord_phi" / "rl_config.json").read_text())
    assert phi["chord_phi"] and phi["chord_mu_peak"] == phi["chord_mu_valley"] == 0.1
    assert json.loads((root / "pear" / "sft_config.json").read_text())["loss"] == "pear"
    assert json.loads((root / "dft" / "sft_config.json").read_text())["loss"] == "dft"
    rows = [json.loads(x) for x in (root / "rl" / "oversft_filter" / "plasticity.jsonl").read_text().splitlines()]
    assert all(0 <= r["filter_dropped_share"] <= 1 for r in rows)
    assert not (root / "rules").exists()  # no fusion or Rejuvenation arm: no rule stage
    brier = json.loads((root / "rl" / "conf_brier" / "rl_config.json").read_text())
    plain = json.loads((root / "rl" / "conf" / "rl_config.json").read_text())
    assert brier["rewards"] == ["math_verify", "brier"] and plain["rewards"] == ["math_verify"]
    assert brier["max_completion_length"] == plain["max_completion_length"] == 40 + 16
    assert "confidence: 1" in (root / "data" / "sft_conf.jsonl").read_text()
    assert json.loads((root / "sft_conf" / "sft_config.json").read_text())["data"].endswith("sft_conf.jsonl")




@pytest.mark.slow
def test_a_newcomer_runs_one_seed_and_reads_the_others_from_records(tmp_path):
    """`make demo`'s path on the smoke world: seed 1 run here and compared with its committed record, seed 0 read
    from it; an untouched record is reproduced, a record altered by one digit names the value, a record of
    another machine's numerics is pooled and labelled, a record of another world is refused."""
    import shutil

    committed = run_demo(DemoConfig("smoke", seeds=[0, 1], out=str(tmp_path / "committed")))
    records = tmp_path / "committed" / "records"
    out = tmp_path / "newcomer"
    result = CliRunner().invoke(main, ["demo", "--preset", "smoke", "--seeds", "0,1", "--pool", str(records),
                                       "--reproduce", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "seeds 0 read from committed records; running 1 here (seed 1 to compare with its committed record)" \
        in result.output
    assert "by the committed record's time]" in result.output  # time left, before this run has measured a seed
    report = json.loads((out / "report.json").read_text())
    provenance = report["provenance"]
    assert provenance["ran_here"] == [1] and provenance["read_from_records"] == [0, 1]
    assert provenance["reproduction"]["1"]["reproduced"] and provenance["reproduction"]["1"]["differences"] == []
    assert any(line.startswith("Reproduction check: seed 1, run here, reproduced its committed record digit for "
                               "digit") for line in provenance["lines"])
    assert report["per_seed"] == committed["per_seed"]  # each seed counted once: the committed record
    assert "Where these numbers come from" in (out / "report.html").read_text()
    assert (out / "reproduced" / "seed-1.json").is_file() and "record digit for digit" in result.output

    altered = tmp_path / "altered"
    shutil.copytree(records, altered)
    edited = json.loads((altered / "seed-1.json").read_text())
    value = edited["rows"]["modsft"]["after"]["overall"]
    edited["rows"]["modsft"]["after"]["overall"] = round(value + 0.001, 6) if value < 0.5 else round(value - 0.001, 6)
    (altered / "seed-1.json").write_text(json.dumps(edited))
    again = run_demo(DemoConfig("smoke", seeds=[0, 1], pool=[str(altered)], reproduce=[1], out=str(out)))
    (difference,) = again["provenance"]["reproduction"]["1"]["differences"]
    assert difference["place"] == "['rows']['modsft']['after']['overall']"
    assert difference["difference"] == pytest.approx(value - edited["rows"]["modsft"]["after"]["overall"])
    assert any(line.startswith("Reproduction check: seed 1, run here, did not reproduce its committed record: 1 of ")
               for line in again["provenance"]["lines"])
    assert "ModSFT" in again["provenance"]["details"][0] and "/ here" in again["provenance"]["details"][0]

    elsewhere = json.loads((records / "seed-0.json").read_text())
    elsewhere["world"]["numerics"]["cpu_capability"] = "AVX2"
    (altered / "seed-0.json").write_text(json.dumps(elsewhere))
    labelled = run_demo(DemoConfig("smoke", seeds=[0, 1], pool=[str(altered)], reproduce=[1], out=str(out)))
    assert labelled["provenance"]["elsewhere"] == {"0": elsewhere["world"]["numerics"]}
    assert any("Seed 0's record was made elsewhere" in line for line in labelled["provenance"]["lines"])
    elsewhere["world"]["settings"]["rl_steps"] += 1
    (altered / "seed-0.json").write_text(json.dumps(elsewhere))
    with pytest.raises(RejuvError, match=r"seed-0.json: seed 0 was run in another world \(settings.rl_steps"):
        run_demo(DemoConfig("smoke", seeds=[0, 1], pool=[str(altered)], reproduce=[1], out=str(out)))
    with pytest.raises(RejuvError, match="--reproduce 2: --pool holds no record of seed 2"):
        run_demo(DemoConfig("smoke", seeds=[0, 1, 2], pool=[str(records)], reproduce=[2], out=str(out)))


@pytest.mark.slow
def test_the_random_reset_control_arm(tmp_path):
    """OverSFT at the rules' α with a random reset of the rules' ρ's size per module: its own arm, the same GRPO."""
    report = run_demo(DemoConfig("smoke", out=str(tmp_path / "d"), arms=["oversft_rejuv", "oversft_random"]))
    root = tmp_path / "d" / "seed-0"
    rules = json.loads((root / "rules" / "rules.json").read_text())
    control = json.loads((root / "random_reset" / "rejuvenation.json").read_text())
    attributed = json.loads((root / "rules" / rules["rejuvenation"] / "rejuvenation.json").read_text())
    assert control["alpha"] == attributed["alpha"] and control["rho"] == attributed["rho"]
    if attributed["rho"]:
        assert control["reset_by_module"] == attributed["reset_by_module"]
        assert control["reset_choice"].startswith("random")
    row = report["per_seed"]["0"]["oversft_random"]
    assert 0 <= row["after"]["overall"] <= 1 and len(row["rl"]["reward"]) == report["settings"]["rl_steps"]
