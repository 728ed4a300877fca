import pytest
from transformers import AutoModelForCausalLM

from rejuv.errors import RejuvError
from rejuv.method.arch import NEURON_KINDS, adapter_for, supported_model_types

from tiny import ARCHS, tiny_config


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
