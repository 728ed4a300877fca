"""`rejuv plan` on tiny models: recommendation, evidence, refusals and rebuild commands."""

import json
import random

import pytest
from click.testing import CliRunner

from rejuv.cli import main
from rejuv.errors import RejuvError
from rejuv.planner.plan import PlanConfig, PlanEvaluation, ProbeSettings, run_plan

from tiny import build_model, planning_world, save, weights

# -- components -------------------------------------------------------------------------------------


# -- the recipe on tiny models -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def planning(tmp_path_factory):
    return planning_world(tmp_path_factory.mktemp("plan"))


def small_plan(root, out, **overrides) -> PlanConfig:
    values = dict(base=str(root / "base"), checkpoints=[str(root / "early"), str(root / "late")],
                  calib=str(root / "calib.jsonl"), probe_data=str(root / "rl.jsonl"), out=str(out),
                  budget_steps=4, alphas=[0.5], rhos=[0.0, 0.05], probe_top=1, k=2, max_samples=8, progress=False,
                  probe=ProbeSettings(rewards=["tiny:contains_seven"], learning_rate=2e-2, num_generations=4,
                                      per_device_batch_size=8, max_completion_length=6),
                  evaluation=PlanEvaluation(samples=2, max_problems=4, max_new_tokens=6))
    values.update(overrides)
    return PlanConfig(**values)


@pytest.mark.slow
def test_plan_recommends_a_probed_candidate_with_its_evidence(planning, tmp_path):
    plan = run_plan(small_plan(planning, tmp_path / "plan"))
    out = tmp_path / "plan"
    assert json.loads((out / "plan.json").read_text()) == plan
    assert (plan["ran"]["device"], plan["ran"]["dtype"]) == ("cpu", "float32") and plan["ran"]["versions"]["trl"]
    names = [c["name"] for c in plan["checkpoints"]]
    assert names == ["early", "late"]
    for c in plan["checkpoints"]:
        assert c["probe"]["steps"] == 4 and len(c["probe"]["rewards"]) == 4
        assert set(c["signals"]) == {"entropy", "top1_mass", "nll", "drift", "pass@1", "pass_gap", "dead_groups",
                                     "pass@group", "coverage", "coverage_ratio", "diversity"}
        assert 0 <= c["signals"]["dead_groups"] <= 1 and c["probe"]["dead_groups_measured"] is not None
        assert 0 <= c["signals"]["coverage"] <= 1 and 0 <= c["signals"]["diversity"] <= 1
        assert c["signals"]["drift"] > 0
    sampled = json.loads((out / "diagnose" / "coverage" / "eval.json").read_text())
    assert sampled["config"]["samples"] == 16 and len(sampled["results"]) == 3  # the base and both checkpoints
    assert sampled["config"]["temperature"] == 1.0
    cands = plan["search"]["candidates"]
    assert [(c["alpha"], c["rho"]) for c in cands] == [(0.5, 0.0), (0.5, 0.05)]
    probed = [c for c in cands if c["probe"] is not None]
    assert len(probed) == 1 and probed[0]["score"] == max(c["score"] for c in cands)
    for c in cands:
        assert 0.0 <= c["entropy_recovered"] <= 1.0
    # The recommendation is the best probe outcome among everything probed.
    outcomes = {c["name"]: c["probe"]["reward_end"] for c in plan["checkpoints"]}
    outcomes[probed[0]["label"]] = probed[0]["probe"]["reward_end"]
    rec = plan["recommendation"]
    assert rec["probe_reward_end"] == max(outcomes.values()) and outcomes[rec["name"]] == rec["probe_reward_end"]
    # Four steps leave one in the last quarter: the spread is unknown, and plan.json and the page say so.
    assert rec["probe_reward_end_se"] is None and not rec["uncertainty"]["separated"]
    assert any("cannot be estimated" in w for w in plan["warnings"])
    assert isinstance(rec["diagnose"]["disagrees"], bool) and rec["diagnose"]["text"]
    if rec["kind"] != "checkpoint":
        assert rec["command"].startswith("rejuv apply") and f"--alpha {rec['alpha']:g}" in rec["command"]
    assert all(v is None for v in plan["correlations_with_probe"].values())  # two checkpoints: no correlation
    assert sorted(plan["checkpoint_order"]["by_probe"]) == names
    html = (out / "plan.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "Hand-off plan" in html
    assert "cannot be estimated" in html and "Diagnose: " in html
    assert {p.name for p in out.glob("plan_*.png")} == {"plan_probes.png", "plan_signals.png", "plan_search.png"}
    assert not list((out / "candidates").rglob("*.safetensors"))  # candidates' weights are not kept
    assert (out / "candidates" / "alpha0.5-rho0.05" / "rejuvenation.json").exists()
    assert not list((out / "probes").rglob("*.safetensors"))  # probes keep logs only
    assert (out / "probes" / "early" / "plasticity.jsonl").exists()


@pytest.mark.slow
def test_plan_without_probes_recommends_the_last_checkpoint_fused_at_half(planning, tmp_path):
    """--no-probes: the probe-free rule (the lab's fused_last_half), no RL run, no search beyond α 0.5."""
    out = tmp_path / "cheap"
    result = CliRunner().invoke(main, [
        "plan", "--base", str(planning / "base"), str(planning / "early"), str(planning / "late"),
        "--calib", str(planning / "calib.jsonl"), "--probe-data", str(planning / "rl.jsonl"), "--out", str(out),
        "--no-probes", "--k", "2", "--max-samples", "8", "--eval-samples", "2", "--eval-max-problems", "4",
        "--eval-max-new-tokens", "6", "--probe-reward", "tiny:contains_seven", "--probe-num-generations", "4",
        "--probe-max-completion-length", "6", "--forecast-prompts", "4", "--coverage-k", "4", "--no-progress"])
    assert result.exit_code == 0, result.output
    plan = json.loads((out / "plan.json").read_text())
    rec = plan["recommendation"]
    assert (rec["kind"], rec["name"], rec["from"]) == ("fused", "alpha0.5-rho0", "late")
    assert (rec["alpha"], rec["rho"]) == (0.5, 0.0)
    assert rec["rule"] == "fused_last_half" and rec["probe_reward_end"] is None
    assert rec["command"].startswith("rejuv apply") and "--alpha 0.5" in rec["command"] and "--fusion-only" in \
        rec["command"]
    assert "no RL probe" in rec["uncertainty"]["text"] and not any("probe" in w for w in plan["warnings"])
    assert plan["probe"] is None and plan["checkpoint_order"]["by_probe"] is None
    assert all(c["probe"] is None for c in plan["checkpoints"]) and not (out / "probes").exists()
    assert [c["label"] for c in plan["search"]["candidates"]] == ["alpha0.5-rho0"]
    assert "TRL" not in plan["ran"]["engine"]
    html = (out / "plan.html").read_text()
    assert "No RL probe ran" in html and "Spearman with probe outcome" not in html
    assert [p.name for p in out.glob("plan_*.png")] == ["plan_search.png"]
    assert "recommended: alpha0.5-rho0 fused from late (α 0.5, ρ 0)" in result.stdout
    assert "Spearman" not in result.stdout


def test_plan_bad_inputs_are_named(planning, tmp_path):
    other, tok = build_model("qwen3", seed=0)
    save(other, tok, tmp_path / "qwen")
    with pytest.raises(RejuvError, match="give at least two"):
        run_plan(small_plan(planning, tmp_path / "o1", checkpoints=[str(planning / "late")]))
    with pytest.raises(RejuvError, match="architectures differ"):
        run_plan(small_plan(planning, tmp_path / "o2", checkpoints=[str(planning / "early"), str(tmp_path / "qwen")]))
    with pytest.raises(RejuvError, match="search_on: 'nope' is none of the checkpoints"):
        run_plan(small_plan(planning, tmp_path / "o3", search_on="nope"))
    with pytest.raises(RejuvError, match="budget_steps: must be ≥ 4"):
        run_plan(small_plan(planning, tmp_path / "o4", budget_steps=2))
    # --no-probes fuses at α 0.5 with no reset: a grid of the user's would be silently dropped
    with pytest.raises(RejuvError, match="alphas: --no-probes searches no grid"):
        small_plan(planning, tmp_path / "o5", probes=False)
    with pytest.raises(RejuvError, match="rhos: --no-probes searches no grid"):
        small_plan(planning, tmp_path / "o6", probes=False, alphas=[0.3, 0.5, 0.7, 0.9])
    small_plan(planning, tmp_path / "o7", probes=False, alphas=[0.3, 0.5, 0.7, 0.9], rhos=[0.0, 0.01])
    with pytest.raises(RejuvError, match="coverage_k: 1 sample per prompt has no diversity"):
        small_plan(planning, tmp_path / "o8", coverage_k=1)
    assert not any(tmp_path.glob("o*"))


@pytest.mark.slow
def test_plan_refuses_a_reward_that_is_always_zero(planning, tmp_path):
    result = CliRunner().invoke(main, [
        "plan", str(planning / "early"), str(planning / "late"), "--base", str(planning / "base"),
        "--calib", str(planning / "calib.jsonl"), "--probe-data", str(planning / "rl.jsonl"),
        "--probe-reward", "tiny:always_zero", "--budget-steps", "4", "--alphas", "0.5", "--rhos", "0",
        "--probe-top", "0",
        "--probe-num-generations", "4", "--probe-per-device-batch-size", "8", "--probe-max-completion-length", "4",
        "--eval-samples", "2", "--k", "2", "--eval-max-problems", "2", "--eval-max-new-tokens", "4",
        "--max-samples", "4", "--no-progress",
        "--out", str(tmp_path / "zero")])
    assert result.exit_code != 0
    assert "averaged 0 at every step of every RL probe" in result.output
    assert not (tmp_path / "zero").exists()


@pytest.fixture(scope="module")
def chat_sft(tmp_path_factory):
    """Two SFT epochs of a chat model (the char tokenizer has a template) trained on text rows, which go
    through the template; it answers `\\boxed{7}` after the assistant tag."""
    from rejuv.recipes.sft import SFTRecipeConfig, run_sft

    root = tmp_path_factory.mktemp("chat")
    base, tok = build_model("llama", seed=0)
    save(base, tok, root / "base")
    rng = random.Random(0)
    with open(root / "sft.jsonl", "w") as f:
        for _ in range(32):
            f.write(json.dumps({"prompt": f"compute {rng.randint(1, 9)}+{rng.randint(1, 9)}.",
                                "completion": "\\boxed{7}"}) + "\n")
    with open(root / "problems.jsonl", "w") as f:  # plain-text problems, as users have them
        for i in range(16):
            f.write(json.dumps({"problem": f"compute {i % 9 + 1}+{i % 5 + 1}.", "answer": "7" if i % 2 else "5"})
                    + "\n")
    run_sft(SFTRecipeConfig(model=str(root / "base"), data=str(root / "sft.jsonl"), out=str(root / "sft"),
                            save_epochs=[4, 8], learning_rate=1e-2, progress=False))
    return root


@pytest.mark.slow
def test_plan_on_plain_text_problems_of_a_chat_model_sees_reward(chat_sft, tmp_path):
    values = dict(base=str(chat_sft / "base"), checkpoints=[str(chat_sft / "sft" / "epoch-4"),
                  str(chat_sft / "sft" / "epoch-8")], calib=str(chat_sft / "sft.jsonl"),
                  probe_data=str(chat_sft / "problems.jsonl"), budget_steps=4, alphas=[0.9], rhos=[0.0],
                  probe_top=0, k=2, max_samples=8, progress=False,
                  probe=ProbeSettings(learning_rate=1e-4, num_generations=4, per_device_batch_size=8,
                                      max_completion_length=10),
                  evaluation=PlanEvaluation(samples=2, max_problems=4, max_new_tokens=10))
    plan = run_plan(PlanConfig(out=str(tmp_path / "plan"), **values))
    rewards = [r for c in plan["checkpoints"] for r in c["probe"]["rewards"]]
    assert max(rewards) > -1.0  # the probes answered in the format SFT taught
    assert plan["recommendation"]["diagnose"]["flagged"]  # epoch 8 collapsed; the plan states how it weighed that


@pytest.mark.slow
def test_the_search_runs_one_attribution_and_its_commands_rebuild_the_candidates(planning, tmp_path, monkeypatch):
    import shlex

    import rejuv.method.passes

    calls = []
    original = rejuv.method.passes.find_reset_set

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(rejuv.method.passes, "find_reset_set", counted)
    cfg = small_plan(planning, tmp_path / "plan", alphas=[0.5, 0.7], rhos=[0.0, 0.02, 0.05], probe_top=0,
                     keep_candidates=True)
    plan = run_plan(cfg)
    cands = plan["search"]["candidates"]
    assert len([c for c in cands if c["rho"] > 0]) == 4 and len(calls) == 1
    assert all(0 < c["effective_reset_ratio"] < 1 for c in cands if c["rho"] > 0)
    for cand in cands:
        if cand["rho"] != 0.05:
            continue
        command = cand["command"].replace("OUT", str(tmp_path / cand["label"]))  # plan.json records it
        result = CliRunner().invoke(main, [*shlex.split(command)[1:], "--no-progress"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        rebuilt, kept = weights(tmp_path / cand["label"]), weights(tmp_path / "plan" / "candidates" / cand["label"])
        assert rebuilt.keys() == kept.keys() and all(rebuilt[n].equal(kept[n]) for n in kept)
    assert len(calls) == 1  # the rebuilds reused it too


def test_every_flag_the_planners_messages_name_is_an_option_of_plan():
    """Messages tell the user which option to change (and the rebuild command uses apply's); after a rename
    they must still name real ones."""
    import re
    from pathlib import Path

    import rejuv.planner.plan
    import rejuv.planner.search
    from rejuv.options import click_params
    from rejuv.recipes.apply import ApplyConfig

    flags = {opt for config in (PlanConfig, ApplyConfig) for p in click_params(config)
             for opt in [*getattr(p, "opts", []), *getattr(p, "secondary_opts", [])]}
    for module in (rejuv.planner.search, rejuv.planner.plan):
        named = set(re.findall(r"--[a-z][a-z-]*[a-z]", Path(module.__file__).read_text()))
        named -= {"--eval", "--probe"}  # the sections' prefixes (--eval-samples, --probe-beta, ...)
        assert named and named <= flags, (module.__name__, named - flags)


def test_plan_refuses_bad_rows_before_the_first_step(planning, tmp_path, monkeypatch):
    """Probe rows without an answer were refused only after the diagnosis had run."""
    import rejuv.planner.plan as plan_recipe

    def no_step(*args, **kwargs):
        raise AssertionError("a step ran before the rows were checked")

    monkeypatch.setattr(plan_recipe, "run_diagnose", no_step)
    (tmp_path / "rl.jsonl").write_text(json.dumps({"prompt": "1+1?"}) + "\n")
    with pytest.raises(RejuvError, match=r"rl\.jsonl:1: missing the 'answer' column"):
        run_plan(small_plan(planning, tmp_path / "o", probe_data=str(tmp_path / "rl.jsonl")))
    (tmp_path / "calib.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "q"},
                                                                   {"role": "assistant", "content": ""}]}) + "\n")
    with pytest.raises(RejuvError, match=r"calib\.jsonl:1: empty response"):
        run_plan(small_plan(planning, tmp_path / "o", calib=str(tmp_path / "calib.jsonl")))
    assert not (tmp_path / "o").exists()
