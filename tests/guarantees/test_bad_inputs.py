"""Bad options and inputs to the model-loading commands end in one line naming the option or file, before
any work; the same loading rules (pickle refused unless allowed) in every command."""

import json

import pytest
import torch
from click.testing import CliRunner

from rejuv.cli import main
from rejuv.data.calibration import Calibration, Sample, check_vocabulary
from rejuv.errors import RejuvError

from tiny import build_model, save


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    model, tok = build_model("llama", seed=0)
    good = save(model, tok, root / "good")
    pickled = save(model, tok, root / "pickled")
    for f in pickled.glob("*.safetensors"):
        f.unlink()
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    data = root / "data.jsonl"
    data.write_text(json.dumps({"prompt": "1+1=", "completion": "2", "answer": "2"}) + "\n")
    return {"good": str(good), "pickled": str(pickled), "data": str(data), "root": root}


def _fails(args, message):
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0 and message in result.output, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["eval", "sft", "rl"])
def test_pickle_weights_are_refused_unless_allowed(folders, command):
    out = str(folders["root"] / f"out-{command}")
    args = {"eval": ["eval", folders["pickled"], "--data", folders["data"], "--out", out],
            "sft": ["sft", "--model", folders["pickled"], "--data", folders["data"], "--out", out],
            "rl": ["rl", "--model", folders["pickled"], "--data", folders["data"], "--out", out]}[command]
    _fails(args, "weights are pickle files")


@pytest.mark.parametrize("args, message", [
    (["eval", "{good}", "--data", "{data}", "--temperature", "-1"], "--temperature: must be ≥ 0, got -1.0"),
    (["eval", "{good}", "--data", "{data}", "--top-p", "0"], "--top-p: must lie in (0, 1], got 0.0"),
    (["sft", "--model", "{good}", "--data", "{data}", "--learning-rate", "nan"], "--learning-rate: must be a finite"),
    (["sft", "--model", "{good}", "--data", "{data}", "--save-epochs", "0"], "--save-epochs: must be > 0, got 0.0"),
    (["rl", "--model", "{good}", "--data", "{data}", "--learning-rate", "0"], "--learning-rate: must be > 0"),
    (["rl", "--model", "{good}", "--data", "{data}", "--max-steps", "-3"], "--max-steps: must be ≥ 1, got -3"),
    (["apply", "--base", "{good}", "--sft", "{good}", "--fusion-only", "--max-shard-size", "nanGB"],
     "--max-shard-size: cannot read size"),
])
def test_bad_numbers_are_one_line(folders, args, message):
    out = str(folders["root"] / "out-numbers")
    _fails([a.format(**folders) for a in args] + ["--out", out], message)


def test_a_tokenizer_from_another_model_is_named():
    calib = Calibration("c.jsonl", "0", 1, [Sample([1, 2, 70], 1, "c.jsonl:3")])
    with pytest.raises(RejuvError, match="c.jsonl:3: token id 70 is outside the vocabulary of m"):
        check_vocabulary(calib, 64, "m")
    with pytest.raises(RejuvError, match="m: config.json has no integer vocab_size"):
        check_vocabulary(calib, None, "m")
    check_vocabulary(calib, 71, "m")


@pytest.mark.parametrize("args, message", [
    (["apply", "--base", "{good}", "--sft", "{good}", "--calib", "{data}", "--rho", "auto", "--rho-grid", "0"],
     "--rho-grid: must lie in (0, 1), got 0.0"),
    (["diagnose", "{good}", "--base", "{good}", "--calib", "{data}", "--eval-temperature", "-1"],
     "--eval-temperature: must be ≥ 0, got -1.0"),
    (["demo", "--preset", "smoke", "--seeds", "-1"], "--seeds: must lie in [0, 4294967296), got -1"),
    (["demo", "--preset", "smoke", "--seeds", "100000000000000000000"], "got 100000000000000000000"),
    (["demo", "--preset", "smoke", "--seeds", "0,0,0"], "--seeds: 0 is given twice"),
    (["export-verl", "--data", "{data}", "--model", "{root}/nowhere"],
     "nowhere: no such folder; --model takes a model"),
    (["eval", "{good}", "{good}", "--data", "{data}"], "is given twice"),
    (["eval", "{good}", "--data", "{root}/nowhere.jsonl"], "nowhere.jsonl: no such file; --data takes a file"),
    (["eval", "{good}", "--data", "{data}", "--device", "cuda:x"], "--device: expected cpu, cuda, cuda:N or auto"),
])
def test_refused_before_any_work_in_one_line(folders, args, message):
    """Each once ran into a traceback, or into the work before being refused (the classes of issue 28)."""
    out = folders["root"] / "out-early"
    _fails([a.format(**folders) for a in args] + ["--out", str(out)], message)
    assert not out.exists()


def test_a_nan_reference_is_named_like_a_nan_checkpoint(folders, tmp_path):
    """diagnose --reference with NaN weights ended in a LinAlgError from eigh; the others were checked."""
    from safetensors.torch import load_file, save_file

    nan = save(*build_model("llama", seed=0), tmp_path / "nan")
    weights = load_file(nan / "model.safetensors")
    name = "model.layers.0.mlp.down_proj.weight"
    weights[name][0, 0] = float("nan")
    save_file(weights, nan / "model.safetensors", metadata={"format": "pt"})
    _fails(["diagnose", folders["good"], "--base", folders["good"], "--calib", folders["data"], "--reference",
            str(nan), "--no-progress", "--out", str(tmp_path / "rep")],
           f"{nan}: tensor {name} holds NaN or Inf values; its update cannot be measured")
    assert not (tmp_path / "rep").exists()
