"""`rejuv rl` on a tiny local model (TRL's GRPOTrainer, CPU)."""

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from rejuv.errors import RejuvError
from rejuv.recipes.rl import RLRecipeConfig, run_rl
from rejuv.train.plasticity import read_plasticity_log

from tiny import weights


@pytest.mark.slow
def test_grpo_raises_the_reward_and_logs_plasticity_every_step(world, tmp_path):
    summary = run_rl(RLRecipeConfig(model=str(world / "base"), data=str(world / "rl.jsonl"), out=str(tmp_path / "rl"),
                                    rewards=["tiny:contains_seven"], learning_rate=2e-2, max_steps=20,
                                    max_completion_length=6))
    assert summary["reward_last"] > summary["reward_first"] + 0.5
    rows = read_plasticity_log(tmp_path / "rl" / "plasticity.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 21))
    for row in rows:
        for key in ("grad_norm", "update_l2", "drift_l2", "drift_rel", "frac_changed", "reward", "kl"):
            assert math.isfinite(row[key]), (key, row)
    AutoModelForCausalLM.from_pretrained(tmp_path / "rl")
    assert json.loads((tmp_path / "rl" / "rl_config.json").read_text())["beta"] == 0.001


@pytest.mark.parametrize("change, message", [
    ({"rewards": ["accuracy"]}, "unknown reward 'accuracy'"),
    ({"per_device_batch_size": 6, "num_generations": 4}, "must be divisible by num_generations \\(4\\)"),
    ({"data": "noanswer.jsonl"}, "missing the 'answer' column"),
    ({"model": "not_a_model"}, "not a model folder"),
])
def test_rl_bad_input_fails_before_training(world, tmp_path, change, message):
    (tmp_path / "noanswer.jsonl").write_text(json.dumps({"prompt": "p"}) + "\n")
    (tmp_path / "not_a_model").mkdir()
    values = {"model": str(world / "base"), "data": str(world / "rl.jsonl"), "out": str(tmp_path / "out")}
    values.update({k: str(tmp_path / v) if k in ("data", "model") else v for k, v in change.items()})
    with pytest.raises(RejuvError, match=message):
        run_rl(RLRecipeConfig(**values))
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_rl_with_lora_saves_a_merged_full_model(world, tmp_path):
    run_rl(RLRecipeConfig(model=str(world / "base"), data=str(world / "rl.jsonl"), out=str(tmp_path / "lora"),
                          rewards=["tiny:contains_seven"], learning_rate=5e-2, max_steps=3, max_completion_length=4,
                          lora=True, lora_r=4, lora_alpha=8))
    assert not list((tmp_path / "lora").glob("adapter_*"))
    out, base = weights(tmp_path / "lora"), weights(world / "base")
    assert out.keys() == base.keys()  # plain model tensor names, adapters merged in
    assert any(not torch.equal(out[n], base[n]) for n in out)
    rows = read_plasticity_log(tmp_path / "lora" / "plasticity.jsonl")
    assert len(rows) == 3 and rows[-1]["drift_l2"] > 0


@pytest.mark.slow
def test_cli_rl_reads_yaml_with_trl_args(world, tmp_path):
    import yaml
    from click.testing import CliRunner

    from rejuv.cli import main

    config = tmp_path / "rl.yaml"
    config.write_text(yaml.safe_dump({
        "model": str(world / "base"), "data": str(world / "rl.jsonl"), "out": str(tmp_path / "out"),
        "rewards": ["tiny:contains_seven", "format"], "reward_weights": [1.0, 0.1], "max_steps": 2,
        "max_completion_length": 4, "num_generations": 4, "trl_args": {"top_k": 20}}))
    result = CliRunner().invoke(main, ["rl", "--config", str(config), "--max-steps", "3"])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "out" / "rl_config.json").read_text())
    assert saved["max_steps"] == 3 and saved["trl_args"] == {"top_k": 20} and saved["num_generations"] == 4
    assert len(read_plasticity_log(tmp_path / "out" / "plasticity.jsonl")) == 3
    config.write_text(yaml.safe_dump({"model": str(world / "base"), "data": str(world / "rl.jsonl"),
                                      "out": str(tmp_path / "out2"), "trl_args": {"no_such_field": 1}}))
    bad = CliRunner().invoke(main, ["rl", "--config", str(config)])
    assert bad.exit_code != 0 and "no_such_field" in bad.output and not (tmp_path / "out2").exists()


@pytest.mark.slow
def test_chord_with_mu_zero_is_plain_grpo_and_logs_its_schedule(world, tmp_path):
    common = dict(model=str(world / "base"), data=str(world / "rl.jsonl"), rewards=["tiny:contains_seven"],
                  learning_rate=2e-2, max_steps=3, max_completion_length=6, seed=4)
    run_rl(RLRecipeConfig(out=str(tmp_path / "grpo"), **common))
    run_rl(RLRecipeConfig(out=str(tmp_path / "mu0"), chord_data=str(world / "sft.jsonl"), chord_mu_peak=0.0,
                          chord_mu_valley=0.0, **common))
    plain, zero = weights(tmp_path / "grpo"), weights(tmp_path / "mu0")
    assert all(torch.equal(plain[n], zero[n]) for n in plain)  # µ = 0: the subclass changes nothing
    run_rl(RLRecipeConfig(out=str(tmp_path / "chord"), chord_data=str(world / "sft.jsonl"), chord_mu_peak=0.9,
                          chord_mu_valley=0.1, chord_mu_decay_steps=2, **common))
    rows = read_plasticity_log(tmp_path / "chord" / "plasticity.jsonl")
    assert [r["chord_mu"] for r in rows] == pytest.approx([0.9, 0.5, 0.1])  # half-cosine over 2 steps
    assert all(r["chord_sft_loss"] > 0 for r in rows)
    mixed = weights(tmp_path / "chord")
    assert any(not torch.equal(plain[n], mixed[n]) for n in plain)


@pytest.mark.slow
def test_chord_at_mu_one_is_sft_on_the_expert_rows(world, tmp_path):
    run_rl(RLRecipeConfig(model=str(world / "base"), data=str(world / "rl.jsonl"), out=str(tmp_path / "sft"),
                          rewards=["tiny:contains_seven"], learning_rate=1e-2, max_steps=8, max_completion_length=4,
                          chord_data=str(world / "sft.jsonl"), chord_mu_peak=1.0, chord_mu_valley=1.0,
                          chord_expert_batch_size=8, seed=1))
    losses = [r["chord_sft_loss"] for r in read_plasticity_log(tmp_path / "sft" / "plasticity.jsonl")]
    assert len(losses) == 8 and sum(losses[-2:]) / 2 < sum(losses[:2]) / 2  # the expert loss falls


def test_chord_options_are_checked(world, tmp_path):
    base = dict(model=str(world / "base"), data=str(world / "rl.jsonl"), out=str(tmp_path / "x"),
                chord_data=str(world / "sft.jsonl"))
    with pytest.raises(RejuvError, match=r"chord_mu_peak: must lie in \[0, 1\]"):
        run_rl(RLRecipeConfig(chord_mu_peak=1.5, **base))
    with pytest.raises(RejuvError, match="chord_expert_batch_size: must be ≥ 1"):
        run_rl(RLRecipeConfig(chord_expert_batch_size=0, **base))
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_filter_drops_groups_without_signal(world, tmp_path):
    common = dict(model=str(world / "base"), data=str(world / "rl.jsonl"), learning_rate=2e-2, max_steps=2,
                  max_completion_length=4, filter_groups=True)
    run_rl(RLRecipeConfig(out=str(tmp_path / "zero"), rewards=["tiny:always_zero"], **common))
    rows = read_plasticity_log(tmp_path / "zero" / "plasticity.jsonl")
    assert [r["filter_dropped_share"] for r in rows] == [1.0, 1.0]
    after, before = weights(tmp_path / "zero"), weights(world / "base")
    # every group dropped: an empty loss must be zero, not 0/0 = NaN, so the weights stay as they were
    assert all(torch.equal(after[n], before[n]) for n in before)
    run_rl(RLRecipeConfig(out=str(tmp_path / "seven"), rewards=["tiny:contains_seven"], **common))
    shares = [r["filter_dropped_share"] for r in read_plasticity_log(tmp_path / "seven" / "plasticity.jsonl")]
    assert len(shares) == 2 and all(0.0 <= s <= 1.0 for s in shares)


# -- precision ---------------------------------------------------------------------------------------




@pytest.mark.slow
def test_rl_can_stop_a_collapsing_run_and_keeps_the_model_it_reached(world, tmp_path):
    summary = run_rl(RLRecipeConfig(model=str(world / "base"), data=str(world / "rl.jsonl"), out=str(tmp_path / "rl"),
                                    rewards=["tiny:contains_seven"], learning_rate=5e-2, max_steps=40,
                                    max_completion_length=6, stop_on_entropy_collapse=True, progress=False))
    screen = summary["entropy_screen"]
    assert screen["stopped"] and summary["steps"] == screen["collapse_step"] < 40
    assert screen["start_entropy"] > 1.0  # sampled on the first RL prompts before training
    assert (tmp_path / "rl" / "model.safetensors").is_file() and summary["dead_groups_first_tenth"] is not None


@pytest.mark.slow
def test_dead_groups_are_counted_on_the_outcome_when_a_term_shapes_the_reward(world, tmp_path):
    """exact_match + format: a group that is all wrong but differs in format has a reward spread (TRL does not
    count it dead); rejuv counts it on the outcome, reports that share, and the filter drops such groups."""
    from rejuv.diagnostics.groups import measured_dead_share

    summary = run_rl(RLRecipeConfig(model=str(world / "base"), data=str(world / "rl.jsonl"), out=str(tmp_path / "rl"),
                                    rewards=["exact_match", "format"], reward_weights=[1.0, 0.5], learning_rate=1e-3,
                                    max_steps=3, max_completion_length=6, filter_groups=True))
    rows = read_plasticity_log(tmp_path / "rl" / "plasticity.jsonl")
    assert all(0 <= r["dead_groups_outcome"] <= 1 for r in rows)
    # a shaping term can only make fewer groups constant; the filter drops exactly the groups dead on the outcome
    assert all(r["dead_groups_outcome"] >= r["frac_reward_zero_std"] for r in rows)
    assert all(r["filter_dropped_share"] == r["dead_groups_outcome"] for r in rows)
    assert summary["dead_groups_all_steps"] == measured_dead_share(rows, share=1.0) == pytest.approx(
        sum(r["dead_groups_outcome"] for r in rows) / len(rows))
