import pytest
import torch
from transformers import AutoModelForCausalLM

from rejuv.errors import RejuvError
from rejuv.io.reader import Checkpoint
from rejuv.method.arch import NEURON_KINDS, adapter_for, neuron_sizes, supported_model_types

from tiny import ARCHS, FAMILIES, build_model, save, tiny_config


@pytest.mark.parametrize("arch", ARCHS)
def test_adapter_names_real_modules_with_gqa_shapes(arch):
    config = tiny_config(arch, vocab_size=20)
    model = AutoModelForCausalLM.from_config(config)
    adapter = adapter_for(config.to_dict())
    neurons = adapter.neurons(config.to_dict())
    assert len(neurons) == len(NEURON_KINDS) * config.num_hidden_layers
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    for n in neurons:
        weight = model.get_submodule(n.module).weight
        size = weight.shape[n.axis]
        if n.kind in ("k_proj", "v_proj"):
            assert size == config.num_key_value_heads * head_dim  # grouped-query attention
        elif n.kind in ("o_proj", "q_proj"):
            assert size == config.num_attention_heads * head_dim
        elif n.kind in ("gate_proj", "up_proj", "down_proj"):
            assert size == config.intermediate_size
    for path in (adapter.embedding, adapter.final_norm, adapter.unembedding, adapter.backbone):
        model.get_submodule(path)


def test_unknown_architecture_lists_supported_ones():
    with pytest.raises(RejuvError) as err:
        adapter_for({"model_type": "gpt2"}, where="ckpt/")
    assert "gpt2" in str(err.value) and all(t in str(err.value) for t in supported_model_types())


def test_a_known_family_still_missing_is_refused_with_what_it_lacks():
    with pytest.raises(RejuvError) as err:
        adapter_for({"model_type": "qwen2_moe"}, where="ckpt/")
    assert "ckpt/" in str(err.value) and "shared experts" in str(err.value)
    with pytest.raises(RejuvError, match="gemma3_text"):  # the multimodal wrapper points at its text model
        adapter_for({"model_type": "gemma3"})


EXPECTED_KINDS = {  # per layer, what a reader of the family's modeling code counts (not the adapter)
    "gemma2": {"q_proj": 32, "k_proj": 16, "v_proj": 16, "o_proj": 32, "gate_proj": 64, "up_proj": 64,
               "down_proj": 64},
    "phi3": {"q_proj": 32, "k_proj": 16, "v_proj": 16, "o_proj": 32, "gate_proj": 64, "up_proj": 64,
             "down_proj": 64},
    # 4 experts of width 64 (Mixtral's intermediate_size), gate/up rows and down columns each
    "mixtral": {"q_proj": 32, "k_proj": 16, "v_proj": 16, "o_proj": 32, "gate_proj": 4 * 64, "up_proj": 4 * 64,
                "down_proj": 4 * 64},
}


@pytest.mark.parametrize("arch", FAMILIES)
def test_every_checkpoint_tensor_has_one_place_in_the_loaded_model(arch, tmp_path):
    """The reset and the manifest name the checkpoint's tensors; the in-memory fusion and reset write the
    loaded model's. `memory_slot` must map every checkpoint tensor onto values equal to it, covering every
    parameter exactly once (experts stacked by transformers, Mixtral's block renamed)."""
    model, tok = build_model(arch, seed=0)
    folder = save(model, tok, tmp_path / arch)
    params = dict(model.named_parameters())
    covered = {name: torch.zeros_like(p, dtype=torch.int32) for name, p in params.items()}
    with Checkpoint(folder) as ckpt:
        adapter = adapter_for(ckpt.config)
        for name in ckpt.names():
            param_name, index = adapter.memory_slot(name, ckpt.config)
            view = params[param_name][index] if index else params[param_name]
            assert torch.equal(view, ckpt.read(name)), name
            (covered[param_name][index] if index else covered[param_name]).add_(1)
        sizes = neuron_sizes(adapter, ckpt)
    assert all(bool((c == 1).all()) for c in covered.values()), [n for n, c in covered.items() if not (c == 1).all()]
    per_kind: dict[str, int] = {}
    for n, size in sizes.items():
        if n.layer == 1:
            per_kind[n.kind] = per_kind.get(n.kind, 0) + size
    if arch in EXPECTED_KINDS:
        assert per_kind == EXPECTED_KINDS[arch]
    if arch == "phi3":  # the kinds of a fused projection partition its rows, q then k then v, gate then up
        spans = {n.kind: n.span for n in sizes if n.layer == 0}
        assert spans == {"q_proj": (0, 32), "k_proj": (32, 48), "v_proj": (48, 64), "gate_proj": (0, 64),
                         "up_proj": (64, 128), "o_proj": None, "down_proj": None}
    if arch == "qwen3_moe":  # layer 0 is dense (mlp_only_layers), layer 1 has 4 experts
        assert {n.expert for n in sizes if n.layer == 0} == {None}
        assert {n.expert for n in sizes if n.layer == 1 and n.kind == "down_proj"} == {0, 1, 2, 3}
