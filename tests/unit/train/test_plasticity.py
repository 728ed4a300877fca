"""The plasticity callback in trainers built by hand, as a TRL user adds it to their own script: the signals in
the trackers' logs and the JSONL, and the two-stage entropy screen of arXiv 2606.18487 firing where it should."""

import json

import pytest
import torch
from transformers import TrainerCallback

from rejuv.train.plasticity import PlasticityCallback, read_plasticity_log, sampled_entropy

from tiny import build_model, contains_seven


class Tracker(TrainerCallback):
    """What a tracker (wandb, tensorboard) receives: the logs after every callback ahead of it."""

    def __init__(self):
        self.seen = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.seen.append(dict(logs))


def _grpo(tmp_path, model, tok, lr: float, steps: int):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    args = GRPOConfig(output_dir=str(tmp_path / "grpo"), per_device_train_batch_size=8, num_generations=4,
                      max_completion_length=6, learning_rate=lr, max_steps=steps, logging_steps=1, beta=0.0,
                      use_cpu=True, bf16=False, report_to=[], save_strategy="no", seed=0,
                      dataloader_pin_memory=False, disable_tqdm=True)
    data = Dataset.from_list([{"prompt": f"compute {i}+1."} for i in range(16)])
    return GRPOTrainer(model=model, reward_funcs=[contains_seven], args=args, train_dataset=data,
                       processing_class=tok)


@pytest.mark.slow
def test_a_grpo_run_built_to_collapse_is_stopped_by_the_screen(tmp_path, rejuv_warnings):
    """A reward for one character at a high learning rate: the logged entropy halves within a few steps."""
    model, tok = build_model("llama", seed=0)
    trainer = _grpo(tmp_path, model, tok, lr=5e-2, steps=40)
    tracker = Tracker()
    trainer.add_callback(tracker)
    prompts = [tok(f"compute {i}+1.")["input_ids"] for i in range(4)]
    callback = PlasticityCallback.attach(trainer, screen_prompts=prompts, screen_tokens=8, stop_on_collapse=True)
    trainer.train()
    screen = callback.screen
    assert screen["start_entropy"] > 1.0 and not screen["start_below_floor"]  # a random start explores
    assert screen["stopped"] and trainer.state.global_step == screen["collapse_step"] < 40
    assert screen["logged_entropy"] < 0.5 * screen["first_logged_entropy"]
    assert any("entropy screen: entropy fell from" in w and "training stops here" in w for w in rejuv_warnings)
    rows = read_plasticity_log(tmp_path / "grpo" / "plasticity.jsonl")  # beside the trainer's output
    assert [r["step"] for r in rows] == list(range(1, screen["collapse_step"] + 1))
    assert rows[-1]["screen"] == "entropy collapse: training stopped"
    assert all(r["grad_norm"] is not None and "frac_reward_zero_std" in r and "entropy" in r for r in rows)
    names = {"plasticity/update_l2", "plasticity/drift_rel", "plasticity/entropy", "plasticity/dead_groups"}
    missing = [sorted(names - set(logs)) for logs in tracker.seen if "entropy" in logs and not names <= set(logs)]
    assert missing == []  # the trackers got them
    assert (tmp_path / "grpo" / f"checkpoint-{screen['collapse_step']}").is_dir()  # the state was saved


@pytest.mark.slow
def test_the_pre_rl_screen_flags_a_start_that_no_longer_explores(tmp_path, rejuv_warnings):
    model, tok = build_model("llama", seed=0)
    prompts = [tok(f"compute {i}+1.")["input_ids"] for i in range(4)]
    assert sampled_entropy(model, prompts, tokens=8) > 1.0
    with torch.no_grad():
        model.lm_head.weight.mul_(1000.0)  # a collapsed start: near one token per position
    state_before = torch.random.get_rng_state()
    assert sampled_entropy(model, prompts, tokens=8) < 0.18
    assert torch.equal(torch.random.get_rng_state(), state_before)  # the training's random stream is untouched
    trainer = _grpo(tmp_path, model, tok, lr=1e-6, steps=1)
    callback = PlasticityCallback.attach(trainer, screen_prompts=prompts, screen_tokens=8)
    trainer.train()
    assert callback.screen["start_below_floor"] and not callback.screen["stopped"]
    assert any(w.startswith("entropy screen: the start's entropy is") for w in rejuv_warnings)


@pytest.mark.slow
def test_an_sft_trainer_and_a_plain_trainer_take_it_too(tmp_path, rejuv_warnings):
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments
    from trl import SFTConfig, SFTTrainer

    model, tok = build_model("llama", seed=0)
    rows = [{"prompt": f"compute {i}+1.", "completion": f" {i + 1}"} for i in range(8)]
    sft = SFTTrainer(model=model, processing_class=tok, train_dataset=Dataset.from_list(rows),
                     args=SFTConfig(output_dir=str(tmp_path / "sft"), max_steps=3, per_device_train_batch_size=4,
                                    logging_steps=1, use_cpu=True, bf16=False, report_to=[], save_strategy="no",
                                    dataloader_pin_memory=False, disable_tqdm=True))
    PlasticityCallback.attach(sft)
    sft.train()
    logged = read_plasticity_log(tmp_path / "sft" / "plasticity.jsonl")
    assert len(logged) == 3 and all(r["entropy"] > 0 and r["update_l2"] > 0 for r in logged)
    ids = tok("compute 1+1. 2")["input_ids"]
    plain = Trainer(model=model, train_dataset=[{"input_ids": ids, "labels": ids}] * 4,
                    args=TrainingArguments(output_dir=str(tmp_path / "plain"), max_steps=2, logging_steps=1,
                                           per_device_train_batch_size=2, use_cpu=True, report_to=[],
                                           save_strategy="no", disable_tqdm=True))
    PlasticityCallback.attach(plain, path=tmp_path / "plain.jsonl")
    plain.train()
    assert [json.loads(x)["step"] for x in (tmp_path / "plain.jsonl").read_text().splitlines()] == [1, 2]
    assert any("the trainer logged no entropy" in w for w in rejuv_warnings)


# -- its arguments are checked, its state is per run ---------------------------------------------------------------

@pytest.mark.parametrize(("given", "refused"), [
    ({"entropy_floor": -1}, "entropy_floor: must be > 0, got -1"),
    ({"entropy_floor": float("nan")}, "entropy_floor: must be a finite number"),
    ({"collapse_share": 1.5}, r"collapse_share: must lie in \(0, 1\), got 1.5"),
    ({"collapse_share": 0}, r"collapse_share: must lie in \(0, 1\)"),
    ({"stop_on_collapse": "no"}, "stop_on_collapse: expected true or false, got 'no'"),
    ({"screen_tokens": 0}, r"screen_tokens: must be ≥ 1, got 0"),
    ({"every": 0}, r"every: must be ≥ 1, got 0"),
    ({"collapse_window": 0}, r"collapse_window: must be ≥ 1"),
    ({"screen_prompts": "compute 1+1."}, r"screen_prompts: expected a list"),
    ({"screen_prompts": ["compute 1+1."]}, r"screen_prompts: \[0\] is text .*tokenize the prompts first"),
    ({"screen_prompts": [[]]}, r"screen_prompts: \[0\] must be a non-empty list of token ids"),
    ({"screen_prompts": [[1, -2]]}, r"screen_prompts: \[0\]\[1\] must be a token id"),
    ({"screen_prompts": [[1, 2.5]]}, r"screen_prompts: \[0\]\[1\] must be a token id"),
    ({"seed": -1}, "seed: must lie in"),
])
def test_arguments_the_screen_could_never_act_on_are_refused_naming_them(given, refused):
    from rejuv.errors import RejuvError

    with pytest.raises(RejuvError, match=refused):
        PlasticityCallback(**given)


def test_a_folder_as_the_log_path_is_refused(tmp_path):
    from rejuv.errors import RejuvError

    with pytest.raises(RejuvError, match="path: .* is a folder; give the JSONL file to write"):
        PlasticityCallback(path=tmp_path)
    with pytest.raises(RejuvError, match="path: '' is empty"):
        PlasticityCallback(path="")


def _sft_trainer(out, model, tok, steps=3, save_steps=None):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    rows = [{"prompt": f"compute {i}+1.", "completion": f" {i + 1}"} for i in range(8)]
    return SFTTrainer(model=model, processing_class=tok, train_dataset=Dataset.from_list(rows),
                      args=SFTConfig(output_dir=str(out), max_steps=steps, per_device_train_batch_size=4,
                                     logging_steps=1, use_cpu=True, bf16=False, report_to=[], seed=0,
                                     save_strategy="steps" if save_steps else "no", save_steps=save_steps or 500,
                                     dataloader_pin_memory=False, disable_tqdm=True, learning_rate=1e-3))


@pytest.mark.slow
def test_screen_prompts_out_of_the_vocabulary_are_refused_before_training(tmp_path):
    from rejuv.errors import RejuvError

    model, tok = build_model("llama", seed=0)
    trainer = _sft_trainer(tmp_path / "sft", model, tok)
    PlasticityCallback.attach(trainer, screen_prompts=[[1, 2], [3, len(tok) + 5]])
    before = {n: p.clone() for n, p in model.named_parameters()}
    with pytest.raises(RejuvError, match=rf"screen_prompts: \[1\]\[1\] is token {len(tok) + 5}, outside the model's "
                                         rf"vocabulary of {model.config.vocab_size}"):
        trainer.train()
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())  # not one step was taken


@pytest.mark.slow
def test_one_callback_per_trainer(tmp_path):
    from rejuv.errors import RejuvError

    model, tok = build_model("llama", seed=0)
    trainer = _sft_trainer(tmp_path / "a", model, tok)
    PlasticityCallback.attach(trainer)
    with pytest.raises(RejuvError, match="already has a PlasticityCallback"):
        PlasticityCallback.attach(trainer)
    twice = _sft_trainer(tmp_path / "b", model, tok)
    callback = PlasticityCallback()
    twice.add_callback(callback)
    twice.add_callback(callback)  # transformers only warns
    with pytest.raises(RejuvError, match="this callback was added to the trainer twice"):
        twice.train()
    two = _sft_trainer(tmp_path / "c", model, tok)
    two.add_callback(PlasticityCallback())
    two.add_callback(PlasticityCallback())
    with pytest.raises(RejuvError, match="the trainer has two PlasticityCallbacks"):
        two.train()


@pytest.mark.slow
def test_one_callback_used_by_two_trainers_in_turn_keeps_each_runs_log(tmp_path):
    model, tok = build_model("llama", seed=0)
    callback = PlasticityCallback()
    first = _sft_trainer(tmp_path / "first", model, tok, steps=3)
    first.add_callback(callback)
    first.train()
    second = _sft_trainer(tmp_path / "second", model, tok, steps=2)
    second.add_callback(callback)
    second.train()
    first_rows = read_plasticity_log(tmp_path / "first" / "plasticity.jsonl")
    second_rows = read_plasticity_log(tmp_path / "second" / "plasticity.jsonl")
    assert [r["step"] for r in first_rows] == [1, 2, 3] and [r["step"] for r in second_rows] == [1, 2]
    # the second run's drift is from its own start, not from the first run's
    assert second_rows[0]["drift_l2"] == pytest.approx(second_rows[0]["update_l2"])
    assert all(r["update_l2"] > 0 for r in first_rows + second_rows)


@pytest.mark.slow
def test_a_resumed_run_appends_to_its_log(tmp_path):
    """Resumed from its step-2 checkpoint, a run keeps the rows up to step 2, logs the rest once, and says that
    drift is now measured from the resumed weights; a row cut by the interruption is dropped, said."""
    model, tok = build_model("llama", seed=0)
    out = tmp_path / "run"
    trainer = _sft_trainer(out, model, tok, steps=4, save_steps=2)
    PlasticityCallback.attach(trainer)
    trainer.train()
    full = read_plasticity_log(out / "plasticity.jsonl")
    assert [r["step"] for r in full] == [1, 2, 3, 4] and {r["drift_from_step"] for r in full} == {0}
    with open(out / "plasticity.jsonl", "a") as f:
        f.write('{"step": 5, "upd')  # a line cut by a kill
    model, tok = build_model("llama", seed=0)
    again = _sft_trainer(out, model, tok, steps=4, save_steps=2)
    callback = PlasticityCallback.attach(again)
    again.train(resume_from_checkpoint=str(out / "checkpoint-2"))
    rows = read_plasticity_log(out / "plasticity.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert rows[:2] == full[:2] and [r["drift_from_step"] for r in rows[2:]] == [2, 2]
    assert callback.screen["first_logged_entropy"] == full[0]["entropy"]  # the screen goes on from step 1
