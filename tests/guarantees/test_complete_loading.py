"""Every model rejuv opens loads completely or is refused: what transformers would fill in silently (layers a
config lacks, initialised at random; a NaN in the config; a tensor missing, left over or of another shape;
NaN weights; a file cut short) is one line naming the checkpoint and what is wrong, in every command that
loads a model, before any work, and nothing is written."""

import json

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from rejuv.cli import main
from rejuv.errors import RejuvError
from rejuv.modeling import load_model

from tiny import build_model, save, write_calibration

pytestmark = pytest.mark.slow


def _edit_config(folder, change):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config))


def _edit_weights(folder, change):
    (file,) = folder.glob("*.safetensors")
    tensors = load_file(file)
    change(tensors)
    save_file(tensors, file, metadata={"format": "pt"})


# damage → (how it is made, what the refusal says)
DAMAGES = {
    "config lacks num_hidden_layers": (
        lambda f: _edit_config(f, lambda c: c.pop("num_hidden_layers")),
        "lacks 180 tensor(s) the config's model needs (model.layers.2."),
    "NaN in the config": (lambda f: (f / "config.json").write_text(
        (f / "config.json").read_text().replace('"rms_norm_eps": 1e-05', '"rms_norm_eps": NaN')),
        "config.json: rms_norm_eps is not a finite number"),
    "Infinity inside a nested config value": (
        lambda f: _edit_config(f, lambda c: c.update(rope_parameters={**c["rope_parameters"],
                                                                      "rope_theta": float("inf")})),
        "config.json: rope_parameters.rope_theta is not a finite number"),
    "a tensor missing": (lambda f: _edit_weights(f, lambda t: t.pop("model.layers.1.mlp.down_proj.weight")),
                         "lacks 1 tensor(s) the config's model needs (model.layers.1.mlp.down_proj.weight)"),
    "a tensor left over": (lambda f: _edit_weights(f, lambda t: t.update({"model.layers.9.extra.weight":
                                                                          torch.zeros(2, 2)})),
                           "holds 1 tensor(s) the config's model has no place for (model.layers.9.extra.weight)"),
    "heads that disagree with the fused qkv_proj": (
        lambda f: _edit_config(f, lambda c: c.update(num_key_value_heads=1)),
        "tensor model.layers.0.self_attn.qkv_proj.weight is [64, 32] in the checkpoint, but the config's model "
        "needs [48, 32]"),
    "NaN weights": (lambda f: _edit_weights(f, lambda t: t["model.layers.0.mlp.down_proj.weight"].__setitem__(
        (0, 0), float("nan"))), "tensor model.layers.0.mlp.down_proj.weight holds NaN or infinite values"),
    "a weights file cut in half": (
        lambda f: [open(p, "r+b").truncate(p.stat().st_size // 2) for p in f.glob("*.safetensors")],
        "model.safetensors: truncated or corrupt safetensors file"),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("loading")
    model, tok = build_model("phi3", seed=0)  # fused qkv_proj and gate_up_proj, as real Phi-3 checkpoints
    save(model, tok, root / "base")
    for name, (make, _) in DAMAGES.items():
        folder = save(model, tok, root / name.replace(" ", "-"))
        make(folder)
    write_calibration(root / "calib.jsonl", n=4)
    (root / "data.jsonl").write_text(json.dumps({"prompt": "compute 1+2.", "completion": "3", "answer": "3"}) + "\n")
    return root


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_load_model_refuses_what_did_not_load_completely(world, damage):
    folder = world / damage.replace(" ", "-")
    with pytest.raises(RejuvError, match=str(folder).replace("+", r"\+")) as caught:
        load_model(folder, progress=False)
    assert DAMAGES[damage][1] in str(caught.value) and "\n" not in str(caught.value)


def _commands(root, ckpt, out):
    """Each command with the damaged checkpoint in every model argument (a healthy base beside it would be
    refused earlier, for differing from it)."""
    calib, data = str(root / "calib.jsonl"), str(root / "data.jsonl")
    return {
        "diagnose": ["diagnose", ckpt, "--base", ckpt, "--calib", calib, "--out", out],
        "eval": ["eval", ckpt, "--data", data, "--max-new-tokens", "2", "--out", out],
        "sft": ["sft", "--model", ckpt, "--data", data, "--out", out],
        "rl": ["rl", "--model", ckpt, "--data", data, "--out", out],
        "apply": ["apply", "--base", ckpt, "--sft", ckpt, "--calib", calib, "--out", out],
    }


@pytest.mark.parametrize("command", ["diagnose", "eval", "sft", "rl", "apply"])
@pytest.mark.parametrize("damage", list(DAMAGES))
def test_every_command_that_loads_a_model_refuses_it_in_one_line(world, tmp_path, damage, command):
    folder = world / damage.replace(" ", "-")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [*_commands(world, str(folder), str(out))[command], "--no-progress"])
    expected = DAMAGES[damage][1]
    if command == "apply":  # the layout of the neurons is read from the checkpoint first, and checked
        expected = {"heads that disagree with the fused qkv_proj": "qkv_proj.weight has 64 rows, but the config's "
                    "heads and widths make 48", "config lacks num_hidden_layers": "config.json lacks "
                    "num_hidden_layers", "a tensor missing": "expected a 2-D tensor model.layers.1.mlp.down_proj"
                    }.get(damage, expected)
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 1 and len(lines) == 1 and expected in lines[0], result.output
    assert str(folder) in lines[0] and "report it" not in result.output and "Traceback" not in result.output
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_complete_model_loads_and_tied_weights_are_not_missing(tmp_path):
    model, tok = build_model("llama", seed=0, tied=True)
    loaded = load_model(save(model, tok, tmp_path / "tied"), progress=False)
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()
