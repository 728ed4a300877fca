"""A PEFT adapter folder read as untrusted: what is θ_base + s·B·A is read with the scaling PEFT uses; every other
LoRA variant, and every damaged config or tensor, is refused by name."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from rejuv.errors import RejuvError
from rejuv.io.adapter import LoraAdapter, LoraCheckpoint
from rejuv.io.reader import Checkpoint

from tiny import build_model, make_lora, save

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapter")
    model, tok = build_model("llama", seed=0)
    return model, save(model, tok, root / "base"), root


def _copy(made, tmp_path, **options):
    model, _, _ = made
    return make_lora(model, tmp_path / "a", **options)


def _edit(folder, **changes):
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(("options", "scaling"), [({}, 8 / 4), ({"use_rslora": True}, 8 / math.sqrt(4)),
                                                  ({"rank_pattern": {"q_proj": 2}, "alpha_pattern": {"q_proj": 6}},
                                                   None)])
def test_the_scaling_peft_uses(made, tmp_path, options, scaling):
    adapter = LoraAdapter(_copy(made, tmp_path, **options))
    q = adapter.pairs["model.layers.0.self_attn.q_proj.weight"]
    v = adapter.pairs["model.layers.0.self_attn.v_proj.weight"]
    if scaling is None:  # per-module rank and alpha, matched as PEFT matches them
        assert (q.rank, q.scaling) == (2, 6 / 2) and (v.rank, v.scaling) == (4, 8 / 4)
    else:
        assert q.scaling == v.scaling == scaling and q.rank == 4
    adapter.close()


@pytest.mark.parametrize(("change", "refused"), [
    ({"use_dora": True}, "DoRA"),
    ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
    ({"peft_type": "IA3"}, "peft_type 'IA3'; rejuv reads LoRA adapters only"),
    ({"init_lora_weights": "pissa_niter_4"}, "init_lora_weights 'pissa_niter_4' rewrites the base weights"),
    ({"init_lora_weights": "olora"}, "rewrites the base weights"),
    ({"bias": "lora_only"}, "bias 'lora_only': trained biases"),
    ({"lora_bias": True}, "a trained LoRA bias"),
    ({"fan_in_fan_out": True}, "fan_in_fan_out"),
    ({"alora_invocation_tokens": [3, 4]}, "activated LoRA"),
    ({"some_new_variant": {"x": 1}}, "some_new_variant = {'x': 1} is a LoRA variant rejuv does not handle"),
    ({"r": 0}, "r must be a positive number"),
    ({"r": 8}, "has rank 4, but adapter_config.json says 8"),
])
def test_variants_and_damaged_configs_are_refused_by_name(made, tmp_path, change, refused):
    folder = _edit(_copy(made, tmp_path), **change)
    with pytest.raises(RejuvError, match=str(folder).replace("+", r"\+")) as caught:
        LoraAdapter(folder)
    assert refused in str(caught.value)


@pytest.mark.parametrize(("damage", "refused"), [
    ("embedding", "is LoRA on an embedding"), ("magnitude", "is a DoRA magnitude vector"),
    ("half", "has lora_A without its other half"), ("shape", "lora_A is [4, 32] and lora_B [32, 3]"),
    ("modules_to_save", "is a full copy of a module (modules_to_save)")])
def test_damaged_or_foreign_tensors_are_refused_by_name(made, tmp_path, damage, refused):
    folder = _copy(made, tmp_path)
    file = folder / "adapter_model.safetensors"
    tensors = load_file(file)
    key = "base_model.model.model.layers.0.self_attn.q_proj"
    if damage == "embedding":
        tensors["base_model.model.model.embed_tokens.lora_embedding_A"] = torch.zeros(4, 59)
    elif damage == "magnitude":
        tensors[f"{key}.lora_magnitude_vector"] = torch.ones(32)
    elif damage == "half":
        del tensors[f"{key}.lora_B.weight"]
    elif damage == "shape":
        tensors[f"{key}.lora_B.weight"] = torch.zeros(32, 3)
    else:
        tensors["base_model.model.lm_head.modules_to_save.weight"] = torch.zeros(59, 32)
    save_file(tensors, str(file))
    with pytest.raises(RejuvError, match=refused.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
                       .replace(")", r"\)")):
        LoraAdapter(folder)


def test_no_weights_pickle_weights_and_a_non_finite_config(made, tmp_path):
    folder = _copy(made, tmp_path)
    weights = load_file(folder / "adapter_model.safetensors")
    (folder / "adapter_model.safetensors").unlink()
    with pytest.raises(RejuvError, match="a PEFT adapter without its weights"):
        LoraAdapter(folder)
    torch.save(weights, folder / "adapter_model.bin")
    with pytest.raises(RejuvError, match="weights are pickle files"):
        LoraAdapter(folder)
    assert LoraAdapter(folder, allow_pickle=True).pairs  # read when allowed
    (folder / "adapter_config.json").write_text((folder / "adapter_config.json").read_text()
                                                .replace('"lora_dropout": 0.0', '"lora_dropout": NaN'))
    with pytest.raises(RejuvError, match="lora_dropout is not a finite number"):
        LoraAdapter(folder, allow_pickle=True)


def test_the_merged_view_reads_base_plus_s_b_a(made, tmp_path):
    model, base_folder, _ = made
    adapter = LoraAdapter(_copy(made, tmp_path))
    with Checkpoint(base_folder) as base:
        view = LoraCheckpoint(adapter, base)
        name = "model.layers.1.mlp.down_proj.weight"
        pair = adapter.pairs[name]
        a, b = adapter.weights.read(pair.a), adapter.weights.read(pair.b)
        assert torch.allclose(view.read(name), base.read(name) + pair.scaling * (b @ a), atol=1e-6)
        assert torch.equal(view.read_rows(name, 3, 7), view.read(name)[3:7])  # a block of rows, the same values
        assert torch.equal(view.read("model.norm.weight"), base.read("model.norm.weight"))
        assert view.names() == base.names() and view.low_rank("model.norm.weight") is None
