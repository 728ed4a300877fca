"""The lab end to end on the smoke preset: every arm and every number exists and is finite."""

import json
import math
import random
from dataclasses import replace

import pytest
from click.testing import CliRunner

from rejuv.cli import main
from rejuv.errors import RejuvError
from rejuv.evaluation.grading import grade_many
from rejuv.lab.plan_check import summarize_planner
from rejuv.lab.presets import DEFAULT_ARMS, PRESETS
from rejuv.lab.rules import ALPHAS, RHOS
from rejuv.lab.task import (
    TOKEN_CLASSES,
    TaskSpec,
    char_classes,
    forms,
    pretrain_pool,
    pretraining_texts,
    splits,
    teacher,
    write_task_files,
)
from rejuv.lab.tokenizer import make_char_tokenizer
from rejuv.lab.world import WORDS
from rejuv.planner.field_rules import FIELD_RULES
from rejuv.recipes.demo import DemoConfig, run_demo


def test_task_splits_are_disjoint_and_every_form_grades_correct(tmp_path):
    spec = TaskSpec(max=12, sft_max=8, pretrain_pool=40)
    a = write_task_files(tmp_path / "a", spec, seed=3, sft_rows=20, rl_rows=10, eval_rows=10, calib_rows=5)
    b = write_task_files(tmp_path / "b", spec, seed=3, sft_rows=20, rl_rows=10, eval_rows=10, calib_rows=5)
    assert all(a[k].read_text() == b[k].read_text() for k in a)
    sp = splits(spec, 3, {"sft": 20, "calib": 5, "rl": 10, "id": 10, "ood": 10})
    keys = {name: {tuple(sorted(t)) for t in rows} for name, rows in sp.items()}
    pool = set(pretrain_pool(spec))
    for name, k in keys.items():  # decontaminated: no problem in two splits or in pre-training
        assert not k & pool and all(not k & other for n, other in keys.items() if n != name)
    assert max(max(t) for t in sp["sft"] + sp["calib"]) <= 8 and max(max(t) for t in sp["id"]) <= 12
    ood = [json.loads(x) for x in a["ood"].read_text().splitlines()]
    assert all(row["problem"].startswith("what is ") for row in ood)  # a phrasing SFT never shows
    sft = [json.loads(x) for x in a["sft"].read_text().splitlines()]
    assert all(row["prompt"].startswith("compute ") and "\\boxed{" in row["completion"] for row in sft)
    every = forms(12, 3, 7)
    assert len(set(every)) == 24 and teacher(12, 3, 7) in every and teacher(3, 12, 7) == teacher(12, 3, 7)
    assert grade_many(["22"] * len(every), every) == [True] * len(every)
    texts = pretraining_texts(spec, random.Random(0), 400)
    assert any("boxed" in t["text"] for t in texts) and any(t["text"].startswith("add ") for t in texts)
    tok = make_char_tokenizer(chat_template=None, words=WORDS)
    ids = tok(teacher(3, 4, 5))["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == teacher(3, 4, 5)
    assert tok.convert_tokens_to_ids("\\boxed{") in ids  # the format is one token


def test_token_classes_of_a_worked_solution():
    text = "12+3=15; 15+7=22. \\boxed{22}"
    classes = char_classes(text)
    assert [classes[i] for i in (0, 2, 3, 5, 7, 9, 14)] == ["operand digits", "operators", "operand digits",
                                                            "result digits", "connectives", "operand digits",
                                                            "result digits"]
    assert classes[text.index("\\")] == "format" and classes[text.index("{") + 1] == "result digits"
    assert set(classes) <= set(TOKEN_CLASSES)


def test_the_rules_by_hand():
    from rejuv.lab.rules import choose_alpha, choose_rho

    assert choose_alpha({0.5: 0.3, 0.6: 0.5, 0.7: 0.6}, oversft=0.8)[0] == 0.6  # 0.5 keeps < half of 0.8
    assert choose_alpha({0.5: 0.4, 0.6: 0.5}, oversft=0.8)[0] == 0.5  # exactly half keeps
    assert choose_alpha({0.5: 0.1, 0.9: 0.2}, oversft=0.8)[0] == 0.9  # none keeps half: the largest
    rho, why = choose_rho({0.001: 0.4, 0.003: 0.25, 0.01: 0.1}, fused=0.5)
    assert rho == 0.003 and "0.003" in why
    assert choose_rho({0.001: 0.1}, fused=0.5) == (0.0, choose_rho({0.001: 0.1}, fused=0.5)[1])


def test_claims_are_judged_against_a_margin_by_hand():
    from rejuv.lab.verdicts import judge

    assert judge([0.10, 0.12, 0.08])["verdict"] == "held"  # mean 0.10; margin max(0.02, 2.92·0.02/√3 = 0.034)
    assert judge([0.10, -0.05, 0.01])["verdict"] == "not shown"  # inside the seeds' noise
    assert judge([0.0, 0.0, 0.0])["verdict"] == "not shown"  # a tie never holds
    assert judge([-0.10, -0.12, -0.08])["verdict"] == "reversed"
    assert judge([0.3])["verdict"] == "not judged"
    assert judge([0.01, 0.012, 0.011])["verdict"] == "not shown"  # below the 2-point floor
    result = judge([0.10, 0.12, 0.08])
    assert result["seeds_ahead"] == 3 and result["margin"] == pytest.approx(2.920 * 0.02 / 3 ** 0.5)
    se = 0.02 / 3 ** 0.5  # sd 0.02 over 3 seeds
    assert result["interval"] == pytest.approx([0.10 - 4.303 * se, 0.10 + 4.303 * se])  # two-sided 95%, t(2)
    assert result["detectable"] == pytest.approx(2.920 * se + 1.061 * se)  # margin + t80(2)·se: 80% power
    undecided = judge([0.10, -0.05, 0.01] * 4)  # twelve seeds, sd 0.0735
    se12 = undecided["value"]["sd"] / 12 ** 0.5
    assert undecided["verdict"] == "not shown"
    assert undecided["detectable"] == pytest.approx(max(0.02, 1.796 * se12) + 0.876 * se12)


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
    # A second run reuses every finished step (resumable) and gives the same table.
    again = run_demo(DemoConfig("smoke", out=str(root)))
    assert again["table"] == report["table"]
    # Arms can change: a subset reuses every finished step (no new step is timed) and reports only those arms.
    steps = (root / "timings.jsonl").read_text()
    subset = run_demo(DemoConfig("smoke", out=str(root), arms=["modsft", "oversft"]))
    assert (root / "timings.jsonl").read_text().count("\n") == steps.count("\n") + 1  # only the new diagnosis
    assert subset["table"]["oversft"] == report["table"]["oversft"]
    monkeypatch.setitem(PRESETS, "smoke", replace(PRESETS["smoke"], rl_steps=3))
    with pytest.raises(RejuvError, match="other settings"):
        run_demo(DemoConfig("smoke", out=str(root)))


def test_premise_and_claims_by_hand():
    from rejuv.lab.report import claims, premise

    def arm(before, after, entropy, ood_after=None):
        return {"before": {"overall": before, "id": before, "ood": before},
                "after": {"overall": after, "id": after, "ood": after if ood_after is None else ood_after},
                "entropy": entropy}

    per_seed = {str(s): {"modsft": arm(0.30, 0.60 + d, 0.10), "oversft": arm(0.50, 0.50, 0.01),
                         "oversft_fusion": arm(0.45, 0.55 + d, 0.03), "oversft_rejuv": arm(0.20, 0.55, 0.05, 0.7)}
                for s, d in enumerate((0.0, 0.01, -0.01))}
    found = {c["claim"].split(" (")[0]: c for c in premise(per_seed, tuple(per_seed["0"]))}
    assert found["ModSFT is competent"]["verdict"] == "held"  # 0.30 / 0.50 = 0.6 ≥ 0.5 on every seed
    assert found["OverSFT collapsed"]["verdict"] == "held"  # 0.01 / 0.10 = 0.1 ≤ 0.2
    assert found["Over-training costs RL: ModSFT + RL > OverSFT + RL"]["verdict"] == "held"  # +10 points
    assert "(met on 3 of 3 seeds); ModSFT / OverSFT 60.0 ± 0.0% (" in found["ModSFT is competent"]["text"]
    assert "(ahead on 3 of 3 seeds)" in found["Over-training costs RL: ModSFT + RL > OverSFT + RL"]["text"]
    found = {c["claim"].split(" (")[0]: c for c in claims(per_seed, tuple(per_seed["0"]))}
    assert found["Fusion + RL > OverSFT + RL"]["verdict"] == "held"
    assert found["Rejuvenation + RL > fusion + RL"]["verdict"] == "not shown"  # 0, ±1: a tie
    assert found["Rejuvenation + RL > ModSFT + RL"]["verdict"] == "reversed"  # −5 points
    assert found["OOD: Rejuvenation + RL > OverSFT + RL"]["verdict"] == "held"  # +20 points OOD
    restored = found["Rejuvenation restores entropy"]
    assert restored["verdict"] == "held" and restored["accuracy_kept"]["mean"] == pytest.approx(0.4)
    assert "Accuracy kept before RL: 40 ± 0% of OverSFT's" in restored["text"]


def test_rl_update_claims_by_hand():
    from rejuv.lab.report import rl_updates

    def arm(rel, bf16, rank, kept):
        return {"update": {"rel": rel, "changed_exact": 1.0, "changed_bf16": bf16, "energy_rank_share": rank,
                           "spikes_kept": kept}}

    per_seed = {str(s): {"modsft": arm(0.02 * (1 + d), 0.10, 0.8, 0.5), "oversft": arm(0.01, 0.02 + d, 0.3, 0.95)}
                for s, d in enumerate((0.0, 0.05, -0.05))}
    found = rl_updates(per_seed, ("modsft", "oversft"), stated=True)
    verdicts = {c["claim"].split(" (")[0]: c["verdict"] for c in found["claims"]}
    assert verdicts["RL moves OverSFT less than ModSFT"] == "held"  # log 2 ± 0.05 against a margin ≥ log 1.1
    assert verdicts["RL leaves OverSFT's spikes"] == "held"  # 95% kept on every seed
    assert verdicts["RL updates 5-30% of ModSFT's parameters in a bf16 copy"] == "held"
    assert verdicts["RL updates 5-30% of OverSFT's parameters in a bf16 copy"] == "did not hold"  # 2-7%
    assert verdicts["RL updates of ModSFT are nearly full rank"] == "held"
    assert verdicts["RL updates of OverSFT are nearly full rank"] == "did not hold"
    assert found["lines"][1].startswith("OverSFT: ‖Δ‖/‖θ_start‖ 0.0100 ± 0.0000;")
    assert rl_updates(per_seed, ("modsft", "oversft"), stated=False)["claims"] == []
    per_seed["1"]["oversft"]["update"] = None  # a run made before updates were measured: no figures at all
    assert rl_updates(per_seed, ("modsft", "oversft"), stated=True) == {"lines": [], "claims": []}


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
        assert all(v >= 0 for v in check["shortfall"].values()) and check["shortfall_by_sft_accuracy"] >= 0
        assert check["searched"].startswith("searched-alpha") and "alpha0.5" in check["post_rl"]
    assert any(t.startswith("Test seeds (1 seeds)") for t in planner["texts"])
    assert "The planner against full RL" in (root / "report.html").read_text()


def test_planner_summary_chooses_the_rule_on_development_seeds_by_hand():
    def seed(end, slope, by_accuracy, dead=0.05):
        field = {rule: {"pick": "epoch-2", "shortfall": by_accuracy, "spearman": 0.4} for rule in FIELD_RULES}
        field["fewest_dead_groups"] = {"pick": "epoch-4", "shortfall": dead, "spearman": -0.2}
        return {"shortfall": {"end_reward": end, "slope_extrapolation": slope}, "shortfall_by_sft_accuracy":
                by_accuracy, "searched_minus_rule": 0.01, "searched_minus_half": 0.2, "spearman_probe": 0.5,
                "spearman_sft_accuracy": 0.4, "recommended": {"end_reward": "epoch-1", "slope_extrapolation":
                                                              "epoch-8"}, "field": field}

    summary = summarize_planner({0: seed(0.10, 0.0, 0.1), 1: seed(0.10, 0.02, 0.1), 2: seed(0.0, 0.3, 0.2),
                                 3: {"skipped": "no signal"}, 4: None}, dev_seeds=[0, 1])
    assert summary["rule"] == "slope_extrapolation"  # 0.01 mean shortfall on the development seeds against 0.10
    assert summary["development"]["seeds"] == [0, 1] and summary["test"]["seeds"] == [2]
    assert summary["test"]["shortfall"]["mean"] == pytest.approx(0.3)  # judged where it was not chosen
    assert summary["skipped"] == {3: "no signal"}
    assert summarize_planner({0: None}, [0]) is None
    fixed = summarize_planner({3: seed(0.10, 0.0, 0.1), 4: seed(0.0, 0.3, 0.2)}, dev_seeds=[3], fixed_rule="end_reward")
    assert fixed["rule"] == "end_reward" and fixed["development"] is None and fixed["test"]["seeds"] == [3, 4]
    assert fixed["test"]["shortfall"]["mean"] == pytest.approx(0.05) and "fixed in advance" in fixed["texts"][0]
    table = {row["rule"]: row for row in fixed["test"]["rules"]}  # every rule side by side, on the same seeds
    assert list(table) == ["rejuv plan (end_reward)", *FIELD_RULES]
    assert table["rejuv plan (end_reward)"]["picks"] == {3: "epoch-1", 4: "epoch-1"}
    assert table["fewest_dead_groups"]["shortfall"]["mean"] == pytest.approx(0.05)
    assert table["sft_accuracy"]["shortfall"]["mean"] == pytest.approx(0.15) and table["lowest_nll"]["best_picked"] == 0
    assert not any("fell shorter than the planner" in t for t in fixed["texts"])  # 0.05 is no less than 0.05


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


def test_calibration_claims_and_table_by_hand():
    from rejuv.lab.report import calibration_lines, claims

    def row(brier, ece, overall):
        cal = {"stated": 1.0, "brier": brier, "ece": ece}
        return {"after": {"overall": overall}, "calibration": {"before": cal, "after": cal}, "reward_change": 0.1}

    per_seed = {"0": {"conf": row(0.30, 0.20, 0.5), "conf_brier": row(0.20, 0.10, 0.5)},
                "1": {"conf": row(0.25, 0.15, 0.6), "conf_brier": row(0.27, 0.05, 0.55)}}
    found = {c["claim"]: c for c in claims(per_seed, ("conf", "conf_brier"))}
    assert found["The Brier reward lowers the Brier score after RL"]["verdict"] == "not shown"  # +0.10, −0.02
    ece = found["The Brier reward lowers ECE after RL"]
    assert ece["verdict"] == "held" and ece["value"]["mean"] == pytest.approx(0.1)  # 0.1 on both seeds
    lines = calibration_lines(per_seed, ("conf", "conf_brier"))
    assert lines[-1].startswith("| Conf. SFT → RL + Brier | 100.0 ± 0.0 | 0.235 ± 0.049 |")
    assert calibration_lines({"0": {"conf": {"calibration": {"before": None, "after": None}}}}, ("conf",)) == []


def test_the_rules_say_once_what_their_candidates_warned(capsys):
    """The lab printed every rho candidate's reset warnings; a grid is expected to warn: one line says which."""
    from rejuv.errors import collected_warnings, warn
    from rejuv.lab.rules import _say_what_the_candidates_warned

    with collected_warnings() as found:
        warn("apply: the reset covers 12.0% of the model's neurons, above max_reset_share 5.0%")
    assert found == ["apply: the reset covers 12.0% of the model's neurons, above max_reset_share 5.0%"]
    assert capsys.readouterr().err == ""  # collected, not shown
    _say_what_the_candidates_warned(3, {0.0003: [], 0.003: found, 0.01: [*found, "apply: the reset removed more "
                                                                         "calibration accuracy than fusion did"]})
    line = capsys.readouterr().out.strip()
    assert line.endswith("seed 3: the rules' rho candidates warned of a union above max_reset_share at rho 0.003, "
                         "0.01; more calibration accuracy lost than fusion lost at rho 0.01 (each candidate's "
                         "rejuvenation.json holds its warnings)")


def test_the_report_sets_the_forecast_beside_what_grpo_measured_and_lists_paired_differences():
    from rejuv.lab.report import claim_rows, dead_group_rows, dead_groups, per_seed_table

    def arm(forecast, measured, before, after):
        return {"forecast": {"dead_share": forecast, "prompts": 64, "group_size": 8, "samples_per_prompt": 8},
                "dead_measured": measured, "before": {"overall": before}, "after": {"overall": after}}

    per_seed = {"0": {"modsft": arm(0.9, 1.0, 0.3, 0.2), "oversft": arm(0.2, 0.25, 0.5, 0.4)},
                "1": {"modsft": arm(0.3, 0.5, 0.3, 0.5), "oversft": arm(0.4, 0.25, 0.5, 0.45)}}
    found = dead_groups(per_seed, ("modsft", "oversft"))
    assert found["pairs"] == 4 and found["error"] == pytest.approx((0.1 + 0.05 + 0.2 - 0.15) / 4)
    assert found["abs_error"] == pytest.approx((0.1 + 0.05 + 0.2 + 0.15) / 4)
    assert found["spearman"] == pytest.approx(3 / 22.5 ** 0.5)  # ranks 4,2,1,3 against 4,3,1.5,1.5
    assert dead_group_rows(found)[0] == ["ModSFT", "60 ± 42%", "75 ± 35%", "0: 90 / 100; 1: 30 / 50"]
    claim = {"claim": "A > B", "verdict": "not shown", "value": {"mean": 0.05, "sd": 0.1, "n": 12}, "margin": 0.052,
             "interval": [-0.0135, 0.1135], "detectable": 0.077, "seeds_ahead": 7, "seeds": 12,
             "measure": "overall pass@1 after RL, A − B", "differences": {"0": -0.1, "1": 0.05}}
    assert claim_rows([claim]) == [["A > B", "not shown", "+5.0 ± 10.0 points", "-1.4 to +11.3", "5.2", "7 of 12",
                                    "7.7"]]
    header, rows = per_seed_table(per_seed, ("modsft", "oversft"), [claim])
    assert header[-1] == "Δ overall pass@1 after RL, A − B" and rows[0] == ["0", "30.0 → 20.0", "50.0 → 40.0", "-10.0"]
