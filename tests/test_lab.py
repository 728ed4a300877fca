"""The lab end to end on the smoke preset: every arm and every number exists and is finite."""

import json
import math
import random
from dataclasses import replace

import pytest
from click.testing import CliRunner

from rejuv.cli import main
from rejuv.errors import RejuvError
from rejuv.grading import grade_many
from rejuv.lab.demo import DEFAULT_ARMS, PRESETS, run_demo
from rejuv.lab.planner import summarize_planner
from rejuv.lab.task import TaskSpec, pretraining_texts, solve, write_task_files
from rejuv.lab.world import make_char_tokenizer


def test_task_files_are_seeded_and_solutions_grade_correct(tmp_path):
    a = write_task_files(tmp_path / "a", TaskSpec(), seed=3, sft_rows=20, rl_rows=10, eval_rows=10, calib_rows=5)
    b = write_task_files(tmp_path / "b", TaskSpec(), seed=3, sft_rows=20, rl_rows=10, eval_rows=10, calib_rows=5)
    assert all(a[k].read_text() == b[k].read_text() for k in a)
    ood = [json.loads(x) for x in a["ood"].read_text().splitlines()]
    assert all(row["problem"].startswith("what is ") for row in ood)  # a phrasing SFT never shows
    sft = [json.loads(x) for x in a["sft"].read_text().splitlines()]
    assert all(row["prompt"].startswith("compute ") and "\\boxed{" in row["completion"] for row in sft)
    rows = [json.loads(x) for x in a["rl"].read_text().splitlines()]
    completions = [solve(*map(int, r["prompt"][len("compute "):-1].split("+"))) for r in rows]
    assert grade_many([r["answer"] for r in rows], completions) == [True] * len(rows)
    texts = pretraining_texts(TaskSpec(), random.Random(0), 50)
    assert not any("boxed" in t["text"] for t in texts)  # pre-training never shows the SFT format
    tok = make_char_tokenizer()
    assert tok.decode(tok(solve(3, 4))["input_ids"], skip_special_tokens=True) == solve(3, 4)


def _numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        yield obj


def test_smoke_demo_runs_every_arm_end_to_end(tmp_path, monkeypatch):
    # A reward the smoke model can move within a few steps, so the planner's probes rank something.
    monkeypatch.setitem(PRESETS, "smoke", replace(PRESETS["smoke"], rewards=["math_verify", "tiny:contains_seven"]))
    result = CliRunner().invoke(main, ["demo", "--preset", "smoke", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
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
    assert all(math.isfinite(x) for x in _numbers(report["per_seed"]))
    assert {c["claim"].split(" (")[0] for c in report["claims"]} >= {
        "OverSFT loses entropy", "Rejuvenation restores entropy", "Rejuvenation + RL ≥ OverSFT + RL"}
    assert all(c["verdict"] in ("held", "did not hold", "held on some seeds") for c in report["claims"])
    for name in ("report.html", "rl_curves.png", "before_after.png", "table.md"):
        assert (root / name).stat().st_size > 0
    assert "Table 2 in miniature" in (root / "report.html").read_text()
    manifest = json.loads((root / "seed-0" / "oversft_rejuv" / "rejuvenation.json").read_text())
    assert manifest["alpha"] == report["settings"]["alpha"]
    planner = report["planner"]
    assert planner["seeds"] == 1 and not planner["skipped"]
    check = planner["per_seed"]["0"]
    assert check["epochs"] == ["epoch-1", "epoch-2", "epoch-4"] and len(check["post_rl_pass@1"]) == 3
    assert check["recommendation"] in check["epochs"] + ["alpha0.5-rho0", "alpha0.8-rho0"]
    assert check["alpha_chosen"] in (0.5, 0.8) and 0 <= check["post_rl_alpha_0.5"] <= 1
    assert check["regret"] >= 0 and check["best_start_by_full_rl"] in check["epochs"] + ["alpha0.5", "alpha0.8"]
    assert "The planner against full RL" in (root / "report.html").read_text()
    assert (root / "seed-0" / "plan" / "plan.html").exists()
    # A second run reuses every finished step (resumable) and gives the same table.
    again = run_demo("smoke", str(root))
    assert again["table"] == report["table"]
    # Arms can change: a subset reuses every finished step (no new step is timed) and reports only those arms.
    steps = (root / "timings.jsonl").read_text()
    subset = run_demo("smoke", str(root), arms=("modsft", "oversft"))
    assert (root / "timings.jsonl").read_text().count("\n") == steps.count("\n") + 1  # only the new diagnosis
    assert subset["table"]["oversft"] == report["table"]["oversft"]
    monkeypatch.setitem(PRESETS, "smoke", replace(PRESETS["smoke"], rl_steps=3))
    with pytest.raises(RejuvError, match="other settings"):
        run_demo("smoke", str(root))


def test_planner_summary_counts_seeds_and_spreads_by_hand():
    def seed(probe, sft, chosen, half):
        return {"epochs": ["e1", "e2", "e3"], "spearman_probe": probe, "spearman_sft_accuracy": sft,
                "post_rl_alpha_chosen": chosen, "post_rl_alpha_0.5": half, "regret": max(0.0, half - chosen)}

    summary = summarize_planner({0: seed(1.0, 0.5, 0.6, 0.5), 1: seed(0.5, 0.5, 0.4, 0.5), 2: None,
                                 3: {"skipped": "no signal"}})
    assert summary["seeds"] == 2 and summary["skipped"] == {3: "no signal"}
    assert summary["probe_better_seeds"] == 1  # a tie is not "better"
    assert summary["spearman_probe"]["mean"] == pytest.approx(0.75)
    assert summary["spearman_probe"]["sd"] == pytest.approx(0.3535534, rel=1e-6)
    assert summary["alpha_at_least_as_good_seeds"] == 1
    assert summary["alpha_difference"]["mean"] == pytest.approx(0.0)
    assert "did not hold" in summary["texts"][0] and "1 seed(s) skipped" in summary["texts"][1]
    assert summary["recommendation_best_seeds"] == 1 and summary["regret"]["mean"] == pytest.approx(0.05)
    assert summarize_planner({0: None}) is None
    assert summarize_planner({0: {"skipped": "x"}})["seeds"] == 0


def test_smoke_demo_runs_the_alternative_arms(tmp_path, monkeypatch):
    """CHORD-µ, CHORD-φ, PEAR and the filtered RL run as arms beside staged SFT → RL (planner stage off)."""
    monkeypatch.setitem(PRESETS, "smoke", replace(PRESETS["smoke"], plan_epochs=[]))
    arms = ("modsft", "oversft", "chord_mu", "chord_phi", "pear", "oversft_filter", "conf", "conf_brier")
    report = run_demo("smoke", str(tmp_path / "alt"), arms=arms)
    root = tmp_path / "alt" / "seed-0"
    for arm in arms:
        assert all(0 <= v <= 1 for v in report["per_seed"]["0"][arm]["after"].values())
    mu = [json.loads(x)["chord_mu"] for x in (root / "rl" / "chord_mu" / "plasticity.jsonl").read_text().splitlines()]
    assert mu == pytest.approx([0.9, 0.05])  # the CHORD-µ schedule squeezed into the smoke run's 2 steps
    phi = json.loads((root / "rl" / "chord_phi" / "rl_config.json").read_text())
    assert phi["chord_phi"] and phi["chord_mu_peak"] == phi["chord_mu_valley"] == 0.1
    assert json.loads((root / "pear" / "sft_config.json").read_text())["loss"] == "pear"
    rows = [json.loads(x) for x in (root / "rl" / "oversft_filter" / "plasticity.jsonl").read_text().splitlines()]
    assert all(0 <= r["filter_dropped_share"] <= 1 for r in rows)
    names = {c["claim"] for c in report["claims"]}
    assert any(n.startswith("CHORD-µ ≥ staged ModSFT → RL") for n in names)
    assert any(n.startswith("PEAR SFT + RL ≥ OverSFT + RL") for n in names)
    assert report["planner"] is None
    brier = json.loads((root / "rl" / "conf_brier" / "rl_config.json").read_text())
    plain = json.loads((root / "rl" / "conf" / "rl_config.json").read_text())
    assert brier["rewards"] == ["math_verify", "brier"] and plain["rewards"] == ["math_verify"]
    assert brier["max_completion_length"] == plain["max_completion_length"] == 24 + 16
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
    assert found["The Brier reward lowers the Brier score after RL"]["verdict"] == "held on some seeds"
    assert found["The Brier reward lowers ECE after RL"]["verdict"] == "held"
    assert found["The Brier reward lowers ECE after RL"]["value"]["mean"] == pytest.approx(-0.1)
    assert found["The Brier reward keeps accuracy (overall, after RL)"]["seeds_held"] == 1
    lines = calibration_lines(per_seed, ("conf", "conf_brier"))
    assert lines[-1].startswith("| Conf. SFT → RL + Brier | 100.0 ± 0.0 | 0.235 ± 0.049 |")
    assert calibration_lines({"0": {"conf": {"calibration": {"before": None, "after": None}}}}, ("conf",)) == []
