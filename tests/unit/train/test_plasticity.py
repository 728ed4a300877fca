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
