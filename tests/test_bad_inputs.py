"""Bad options and inputs to the model-loading commands end in one line naming the option or file, before
any work; the same loading rules (pickle refused unless allowed) in every command."""

import json

import pytest
import torch
from click.testing import CliRunner

from rejuv.calibration import Calibration, Sample, check_vocabulary
from rejuv.cli import main
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
    (["eval", "{good}", "--data", "{data}", "--temperature", "-1"], "temperature must be ≥ 0"),
    (["eval", "{good}", "--data", "{data}", "--top-p", "0"], "top_p must lie in (0, 1]"),
    (["sft", "--model", "{good}", "--data", "{data}", "--learning-rate", "nan"], "--learning-rate: must be a finite"),
    (["sft", "--model", "{good}", "--data", "{data}", "--save-epochs", "0"], "save_epochs must be positive"),
    (["rl", "--model", "{good}", "--data", "{data}", "--learning-rate", "0"], "learning_rate must be > 0"),
    (["rl", "--model", "{good}", "--data", "{data}", "--max-steps", "-3"], "max_steps must be > 0"),
    (["apply", "--base", "{good}", "--sft", "{good}", "--fusion-only", "--max-shard-size", "nanGB"],
     "max_shard_size: cannot read size"),
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
