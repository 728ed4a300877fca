"""`rejuv sft` on a tiny local model (TRL's SFTTrainer, CPU), and the precision it trains and saves in."""

import json
import math
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from rejuv.errors import RejuvError
from rejuv.io.reader import Checkpoint
from rejuv.recipes.rl import RLRecipeConfig, run_rl
from rejuv.recipes.sft import SFTRecipeConfig, run_sft
from rejuv.train.plasticity import read_plasticity_log

from tiny import build_model, weights


@pytest.mark.slow
def test_sft_lowers_the_loss_and_saves_loadable_epochs(world, tmp_path):
    summary = run_sft(SFTRecipeConfig(model=str(world / "base"), data=str(world / "sft.jsonl"),
                                      out=str(tmp_path / "nll"), save_epochs=[1, 4], learning_rate=3e-3,
                                      plasticity_log=True))
    log = [json.loads(x) for x in (tmp_path / "nll" / "train_log.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in log if "loss" in row]
    assert summary["steps"] == 16 and len(losses) == 16
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5
    for epoch in ("epoch-1", "epoch-4"):
        folder = tmp_path / "nll" / epoch
        assert not (folder / "training_args.bin").exists()
        model = AutoModelForCausalLM.from_pretrained(folder)
        assert model.config.model_type == "llama"
    first, last = weights(tmp_path / "nll" / "epoch-1"), weights(tmp_path / "nll" / "epoch-4")
    assert any(not torch.equal(first[n], last[n]) for n in first)
    rows = read_plasticity_log(tmp_path / "nll" / "plasticity.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 17))
    assert rows[-1]["drift_l2"] > rows[0]["drift_l2"] > 0


@pytest.mark.slow
def test_dft_gives_different_weights_than_nll_from_the_same_seed(world, tmp_path):
    common = dict(model=str(world / "base"), data=str(world / "sft.jsonl"), save_epochs=[1], learning_rate=3e-3, seed=1)
    run_sft(SFTRecipeConfig(out=str(tmp_path / "a"), loss="nll", **common))
    run_sft(SFTRecipeConfig(out=str(tmp_path / "b"), loss="nll", **common))
    run_sft(SFTRecipeConfig(out=str(tmp_path / "c"), loss="dft", **common))
    a, b, c = (weights(tmp_path / x / "epoch-1") for x in "abc")
    assert all(torch.equal(a[n], b[n]) for n in a)  # same seed: same weights
    assert any(not torch.equal(a[n], c[n]) for n in a)


@pytest.mark.parametrize("change, message", [
    ({"data": "bad.jsonl"}, "expected 'prompt'\\+'completion'"),
    ({"model": "not_a_model"}, "not a model folder"),
    ({"loss": "focal"}, "loss: 'focal' is not one of nll, dft, pear"),
    ({"save_epochs": [0.0]}, "save_epochs: must be > 0"),
])
def test_sft_bad_input_fails_before_training(world, tmp_path, change, message):
    (tmp_path / "bad.jsonl").write_text(json.dumps({"question": "q", "solution": "s"}) + "\n")
    (tmp_path / "not_a_model").mkdir()
    values = {"model": str(world / "base"), "data": str(world / "sft.jsonl"), "out": str(tmp_path / "out")}
    values.update({k: str(tmp_path / v) if k in ("data", "model") else v for k, v in change.items()})
    with pytest.raises(RejuvError, match=message):
        run_sft(SFTRecipeConfig(**values))
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_sft_runs_as_two_processes_under_torchrun(world, tmp_path):
    """The distributed path (DDP over gloo on CPUs) saves one set of checkpoints with half the steps."""
    out = tmp_path / "dist"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "rejuv.cli", "sft",
           "--model", str(world / "base"), "--data", str(world / "sft.jsonl"), "--out", str(out),
           "--save-epochs", "1,2", "--learning-rate", "1e-3", "--per-device-batch-size", "4"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout[result.stdout.rindex('{\n  "out"'):])  # the trainer prints logs first
    assert summary["steps"] == 8  # 32 rows / (2 processes × 4) × 2 epochs
    assert sorted(p.name for p in out.iterdir()) == [".rejuv-output", "epoch-1", "epoch-2", "sft_config.json",
                                                     "train_log.jsonl"]
    assert not list(tmp_path.glob(".dist.rejuv-tmp-*"))


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["token", "sequence"])
def test_pear_sft_trains_and_logs_its_weights(world, tmp_path, variant):
    behavior = str(world / "base") if variant == "sequence" else None
    summary = run_sft(SFTRecipeConfig(model=str(world / "base"), data=str(world / "sft.jsonl"),
                                      out=str(tmp_path / "pear"), save_epochs=[2], learning_rate=3e-3, loss="pear",
                                      pear_variant=variant, pear_behavior_model=behavior))
    log = [json.loads(x) for x in (tmp_path / "pear" / "train_log.jsonl").read_text().splitlines()]
    weights_logged = [row["pear/mean_weight"] for row in log if "pear/mean_weight" in row]
    assert weights_logged and all(0 < w <= math.exp(2.0) * (1 + 1e-6) for w in weights_logged)
    if behavior is not None:
        # The behaviour model is the starting point: the first weights are exactly 1; as the policy fits the
        # data it makes it likelier than the behaviour model did, so the weights (and the weighted loss) grow.
        assert weights_logged[0] == pytest.approx(1.0) and max(weights_logged) > 1.5
    else:  # log π_β = 0: weights are the tokens' own (clipped) probabilities, ≤ 1, and the loss falls
        assert max(weights_logged) <= 1.0 and summary["last_loss"] < summary["first_loss"]
    nll = weights(tmp_path / "pear" / "epoch-2")
    assert any(not torch.equal(nll[n], weights(world / "base")[n]) for n in nll)


def test_pear_options_are_checked(world, tmp_path):
    base = dict(model=str(world / "base"), data=str(world / "sft.jsonl"), out=str(tmp_path / "x"), loss="pear")
    with pytest.raises(RejuvError, match="pear_variant: 'suffix' is not one of token, block, sequence"):
        run_sft(SFTRecipeConfig(pear_variant="suffix", **base))
    with pytest.raises(RejuvError, match="pear_clip: must be > 0"):
        run_sft(SFTRecipeConfig(pear_clip=0.0, **base))
    assert not (tmp_path / "x").exists()


# -- precision ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bf16_checkpoint(world, tmp_path_factory):
    """The tiny base stored in bf16 (as real checkpoints are), and the same values upcast to float32."""
    root = tmp_path_factory.mktemp("bf16")
    model = AutoModelForCausalLM.from_pretrained(world / "base", dtype=torch.float32)
    model.to(torch.bfloat16).save_pretrained(root / "bf16")
    model.to(torch.bfloat16).to(torch.float32).save_pretrained(root / "fp32")
    tok = build_model("llama", seed=0)[1]
    tok.save_pretrained(root / "bf16")
    tok.save_pretrained(root / "fp32")
    return root


def half_bf16_step(w: torch.Tensor) -> torch.Tensor:
    """Half the spacing of bf16 values around |w| (8 significant bits): updates below it round away in bf16."""
    return torch.ldexp(torch.ones_like(w), torch.frexp(w.abs())[1] - 9)


@pytest.mark.slow
def test_float32_master_weights_keep_updates_smaller_than_a_bf16_step(world, bf16_checkpoint, tmp_path):
    # lr 1e-5: Adam moves each weight by about 1e-5 per step, below half a bf16 step of any |w| ≥ 2^-8.
    common = dict(data=str(world / "sft.jsonl"), save_epochs=[2], learning_rate=1e-5, seed=3,
                  dtype="float32", progress=False)
    summary = run_sft(SFTRecipeConfig(model=str(bf16_checkpoint / "bf16"), out=str(tmp_path / "master"),
                                      save_dtype="float32", **common))
    assert summary["precision"] == {"master_weights": "float32", "compute": "float32", "saved": "float32"}
    run_sft(SFTRecipeConfig(model=str(bf16_checkpoint / "fp32"), out=str(tmp_path / "reference"), **common))
    run_sft(SFTRecipeConfig(model=str(bf16_checkpoint / "bf16"), out=str(tmp_path / "pure"), master_dtype="bfloat16",
                            save_dtype="float32", **common))
    start = weights(bf16_checkpoint / "fp32")
    master, reference = weights(tmp_path / "master" / "epoch-2"), weights(tmp_path / "reference" / "epoch-2")
    pure = weights(tmp_path / "pure" / "epoch-2")
    assert all(torch.equal(master[n], reference[n]) for n in start)  # a bf16 checkpoint trains as its fp32 copy
    big = {n: start[n].abs() >= 2**-5 for n in start if start[n].dim() == 2}
    changed = sum(int(((master[n] != start[n]) & big[n]).sum()) for n in big)
    changed_pure = sum(int(((pure[n] != start[n]) & big[n]).sum()) for n in big)
    small_steps = sum(int((((master[n] - start[n]).abs() < half_bf16_step(start[n])) & big[n]).sum()) for n in big)
    total = sum(int(b.sum()) for b in big.values())
    assert changed > 0.9 * total and small_steps > 0.5 * total  # moved, by less than a bf16 step could hold
    assert changed_pure < 0.05 * total  # pure bf16 weights lose those updates


@pytest.mark.slow
def test_weights_are_saved_in_the_input_dtype_unless_asked(world, bf16_checkpoint, tmp_path):

    summary = run_sft(SFTRecipeConfig(model=str(bf16_checkpoint / "bf16"), data=str(world / "sft.jsonl"),
                                      out=str(tmp_path / "s"), save_epochs=[1], learning_rate=1e-3, progress=False))
    assert summary["precision"]["saved"] == "bfloat16" and summary["precision"]["master_weights"] == "float32"
    folder = tmp_path / "s" / "epoch-1"
    with Checkpoint(folder) as ckpt:
        assert {info.dtype for info in ckpt.tensors.values()} == {"BF16"}
    assert json.loads((folder / "config.json").read_text())["dtype"] == "bfloat16"
    assert json.loads((tmp_path / "s" / "sft_config.json").read_text())["precision"]["saved"] == "bfloat16"
    summary = run_rl(RLRecipeConfig(model=str(bf16_checkpoint / "bf16"), data=str(world / "rl.jsonl"),
                                    out=str(tmp_path / "r"), rewards=["tiny:contains_seven"], max_steps=1,
                                    max_completion_length=3, save_dtype="float32", progress=False))
    assert summary["precision"] == {"master_weights": "float32", "compute": "float32", "saved": "float32"}
    with Checkpoint(tmp_path / "r") as ckpt:
        assert {info.dtype for info in ckpt.tensors.values()} == {"F32"}
    with pytest.raises(RejuvError, match="dtype bfloat16 \\(mixed precision\\) needs a CUDA device"):
        run_sft(SFTRecipeConfig(model=str(world / "base"), data=str(world / "sft.jsonl"), out=str(tmp_path / "x"),
                                dtype="bfloat16"))


@pytest.mark.slow
def test_a_short_run_saved_in_bf16_says_how_little_of_it_the_weights_keep(world, bf16_checkpoint, tmp_path,
                                                                          rejuv_warnings):
    """Two small steps saved in the input's bf16 keep little of the update: the summary says how much, and a
    warning points at --save-dtype float32; saved in float32, nothing is lost and nothing is said."""
    common = dict(model=str(bf16_checkpoint / "bf16"), data=str(world / "sft.jsonl"), save_epochs=[0.125],
                  learning_rate=1e-5, dtype="float32", progress=False)
    summary = run_sft(SFTRecipeConfig(out=str(tmp_path / "bf16"), **common))
    kept = summary["update_kept_when_saved"]["0.125"]
    start, saved = weights(bf16_checkpoint / "bf16"), weights(tmp_path / "bf16" / "epoch-0.125")
    unchanged = sum(int((saved[n] == start[n]).sum()) for n in start) / sum(t.numel() for t in start.values())
    assert kept is not None and kept < 0.5 and unchanged > 0.5  # (what the saved bytes themselves show)
    assert any(f"keep {kept:.1%} of the entries this run changed" in w and "--save-dtype float32" in w
               for w in rejuv_warnings), rejuv_warnings
    rejuv_warnings.clear()
    summary = run_sft(SFTRecipeConfig(out=str(tmp_path / "f32"), save_dtype="float32", **common))
    assert summary["update_kept_when_saved"] == {"0.125": None} and rejuv_warnings == []
